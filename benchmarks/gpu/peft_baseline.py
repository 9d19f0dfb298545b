"""PyTorch + PEFT baseline for benchmarks/gpu: the same LoRA training step that bench.ts times in webtune.

gpt2 config (transformers' GPT2Config defaults: 12 layers, 768 wide, 12 heads, vocab 50257), random init,
LoRA r 8, alpha 16, dropout 0 on c_attn, batch 4 x seq 256 of random ids, fp32 with TF32 off, AdamW lr 1e-4
(weight decay 0), gradient clipping at 1.0 (webtune's Trainer default and HF Trainer's), the loss read back
with .item() every step, as webtune awaits it. The base model's own dropouts are set to 0: webtune's GPT-2 has
none. Prints a human summary and, last, one JSON line.

Usage: python3 benchmarks/gpu/peft_baseline.py [--steps 20] [--warmup 5] [--smoke]
"""

import argparse
import json
import time

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")

from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402


def lora_step_flops(n_layer, n_embd, vocab, batch, seq, r):
    """The formula of bench.ts's loraStepFlops (see README.md): frozen base, forward + input-gradient backward."""
    C, L, tokens = n_embd, n_layer, batch * seq
    N = L * (3 * C * C + C * C + 4 * C * C + 4 * C * C) + vocab * C
    linear = 4 * N * tokens
    attention = 12 * seq * C * L * tokens
    lora = 6 * r * (C + 3 * C) * L * tokens
    return {"linear": linear, "attention": attention, "lora": lora, "total": linear + attention + lora}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(n, reps, device):
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    sync(device)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            c = torch.mm(a, b)
        sync(device)
        dt = time.perf_counter() - t0
        best = max(best, 2 * n**3 * reps / dt / 1e9)
    del c
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--smoke", action="store_true", help="2 layers, batch 1, seq 32, 2 steps (CPU check)")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.warmup, args.batch, args.seq = 2, 1, 1, 32
    n_layer = 2 if args.smoke else 12

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "smoke": args.smoke,
    }
    try:
        import peft
        import transformers

        result["transformers"] = transformers.__version__
        result["peft"] = peft.__version__
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    print(f"torch {result['torch']} on {result['device']}; tf32 matmul {torch.backends.cuda.matmul.allow_tf32}")

    sizes = [(256, 4), (512, 2)] if args.smoke else [(1024, 50), (2048, 20), (4096, 10)]
    roof = {}
    for n, reps in sizes:
        roof[str(n)] = round(matmul_gflops(n, reps, device), 1)
        print(f"torch.mm f32 {n}^3: {roof[str(n)]} GFLOP/s")
    result["matmul_gflops"] = roof
    result["roof_gflops"] = max(roof.values())

    torch.manual_seed(0)
    config = GPT2Config(n_layer=n_layer, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config).to(device)
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["c_attn"],
        fan_in_fan_out=True,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1)
    batches = [
        torch.randint(0, config.vocab_size, (args.batch, args.seq), generator=gen).to(device) for _ in range(8)
    ]

    def step(i):
        ids = batches[i % len(batches)]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for i in range(args.warmup):
        step(i)
    sync(device)
    losses, per_step = [], []
    t0 = time.perf_counter()
    for i in range(args.steps):
        s = time.perf_counter()
        losses.append(step(i))
        per_step.append((time.perf_counter() - s) * 1000)
    sync(device)
    ms = (time.perf_counter() - t0) * 1000 / args.steps
    tokens_per_sec = args.batch * args.seq / (ms / 1000)
    flops = lora_step_flops(n_layer, config.n_embd, config.vocab_size, args.batch, args.seq, 8)
    gflops = flops["total"] / (ms / 1000) / 1e9
    per_step.sort()
    print(f"losses: {' '.join(f'{x:.4f}' for x in losses)}")
    print(
        f"train step: {ms:.2f} ms/step, {tokens_per_sec:.0f} tokens/s, {flops['total'] / 1e9:.1f} GFLOP/step "
        f"-> {gflops:.0f} model GFLOP/s, MFU vs torch.mm roof {100 * gflops / result['roof_gflops']:.1f}%"
    )
    result["train"] = {
        "config": {
            "n_layer": n_layer,
            "batch": args.batch,
            "seq": args.seq,
            "r": 8,
            "alpha": 16,
            "dropout": 0.0,
            "lr": 1e-4,
            "targetModules": ["c_attn"],
            "dtype": "float32",
            "attn_implementation": getattr(config, "_attn_implementation", None),
        },
        "params_total": total,
        "params_trainable": trainable,
        "warmup_steps": args.warmup,
        "steps": args.steps,
        "ms_per_step": round(ms, 3),
        "ms_per_step_median": round(per_step[len(per_step) // 2], 3),
        "tokens_per_sec": round(tokens_per_sec, 1),
        "step_gflop": round(flops["total"] / 1e9, 2),
        "model_gflops": round(gflops, 1),
        "mfu_vs_matmul_roof": round(gflops / result["roof_gflops"], 4),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "max_memory_allocated": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
