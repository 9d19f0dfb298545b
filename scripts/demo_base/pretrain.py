"""Pretrains webtune's embedded demo base model: a small Llama on the GCIDE corpus, in plain torch on the CPU.

    python3 scripts/demo_base/corpus.py                 # build/demo_base/pretrain.txt and the demo datasets
    python3 scripts/demo_base/pretrain.py --steps 1500  # writes demo/public/models/webtune-demo-base/

Reproducible from --seed (tokenizer, data order, initialisation); wall time depends on the machine.
"""
import argparse
import json
import math
import struct
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import bpe

REPO = Path(__file__).resolve().parents[2]
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": 0,
    "torch_dtype": "float32",
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        e = c["hidden_size"]
        self.q_proj = nn.Linear(e, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(e, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(e, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, e, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.h // self.kv, dim=1)
        v = v.repeat_interleave(self.h // self.kv, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.d) + mask
        y = att.softmax(-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.h * self.d))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, i = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(e, i, bias=False)
        self.up_proj = nn.Linear(e, i, bias=False)
        self.down_proj = nn.Linear(i, e, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    """HF LlamaForCausalLM's maths and parameter names (under `model.`), with tied embeddings."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["num_hidden_layers"]) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, ids):
        t = ids.shape[1]
        d = self.c["head_dim"]
        inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
        freqs = torch.outer(torch.arange(t).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x) @ self.embed_tokens.weight.T


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def batches(tokens: torch.Tensor, seq_len: int, batch: int, gen: torch.Generator):
    windows = (len(tokens) - 1) // seq_len
    while True:
        for idx in torch.randperm(windows, generator=gen).split(batch):
            if len(idx) < batch:
                continue
            starts = idx * seq_len
            x = torch.stack([tokens[s : s + seq_len + 1] for s in starts.tolist()])
            yield x[:, :-1], x[:, 1:]


@torch.no_grad()
def mean_loss(model, tokens, seq_len: int, max_windows: int = 64) -> float:
    windows = min((len(tokens) - 1) // seq_len, max_windows)
    x = torch.stack([tokens[i * seq_len : i * seq_len + seq_len + 1] for i in range(windows)])
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(REPO / "build" / "demo_base" / "pretrain.txt"))
    ap.add_argument("--out", default=str(REPO / "demo" / "public" / "models" / "webtune-demo-base"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--tokenizer-entries", type=int, default=20000, help="corpus entries the BPE merges are learned from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    entries = Path(args.corpus).read_text().split("\n")
    entries = [e for e in entries if e]
    merges = bpe.train_bpe(entries[: args.tokenizer_entries], CONFIG["vocab_size"])
    bpe.write_tokenizer(out, merges, CONFIG["max_position_embeddings"])
    encoder = bpe.Encoder(merges)
    eot = encoder.vocab["<|endoftext|>"]
    ids = []
    for e in entries:
        ids += encoder.encode(e) + [eot]
    tokens = torch.tensor(ids, dtype=torch.long)
    n_val = len(tokens) // 100
    train_tokens, val_tokens = tokens[:-n_val], tokens[-n_val:]
    print(f"tokenizer and corpus: {len(tokens):,} tokens ({time.time() - started:.0f} s)", flush=True)

    model = Llama(CONFIG)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    warmup = max(1, args.steps // 20)
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    gen = torch.Generator().manual_seed(args.seed)
    data = batches(train_tokens, args.seq_len, args.batch, gen)
    log, train_started = [], time.time()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, y = next(data)
        loss = F.cross_entropy(model(x).reshape(-1, CONFIG["vocab_size"]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            val = mean_loss(model, val_tokens, args.seq_len) if step % 250 == 0 or step == args.steps - 1 else None
            log.append({"step": step, "loss": loss.item(), "val_loss": val, "elapsed_s": round(time.time() - train_started, 1)})
            print(json.dumps(log[-1]), flush=True)

    model.eval()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    write_safetensors(out / "model.safetensors", tensors)
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    generation = {"bos_token_id": 0, "eos_token_id": [0, 2], "pad_token_id": 0, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    summary = {
        "parameters": params,
        "corpus_tokens": len(tokens),
        "train_tokens": len(train_tokens),
        "val_tokens": len(val_tokens),
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "tokens_seen": args.steps * args.batch * args.seq_len,
        "lr": args.lr,
        "seed": args.seed,
        "final_train_loss": sum(e["loss"] for e in log[-3:]) / len(log[-3:]),
        "final_val_loss": log[-1]["val_loss"],
        "wall_time_s": round(time.time() - started),
        "torch": torch.__version__,
        "threads": args.threads,
        "log": log,
    }
    (REPO / "scripts" / "demo_base" / "pretrain_log.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "log"}))


if __name__ == "__main__":
    main()
