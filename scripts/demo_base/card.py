"""Writes the demo base model's card (README.md in its folder) from pretrain.py's log and the model's config.

    python3 scripts/demo_base/card.py
"""
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "demo" / "public" / "models" / "webtune-demo-base"
LOG = Path(__file__).with_name("pretrain_log.json")


def main() -> None:
    log = json.loads(LOG.read_text())
    c = json.loads((MODEL / "config.json").read_text())
    minutes = log["wall_time_s"] / 60
    card = f"""---
license: gpl-2.0
language: en
library_name: webtune
pipeline_tag: text-generation
tags: [llama, demo, webtune]
---

# webtune-demo-base

A {log["parameters"] / 1e6:.2f} M-parameter Llama that webtune pretrains itself and ships in its repository, so that
fine-tuning works offline out of the box. **It is a demo base, not a useful assistant**: it writes dictionary-like
English and knows nothing else. Use it to try LoRA, to test, and to learn; use a real model for real work.

## Architecture

`LlamaForCausalLM`: {c["num_hidden_layers"]} layers, hidden size {c["hidden_size"]}, {c["num_attention_heads"]} attention heads
of {c["head_dim"]} with {c["num_key_value_heads"]} key/value heads (GQA), SwiGLU MLP of {c["intermediate_size"]}, RMSNorm, RoPE
(theta {c["rope_theta"]:g}), {c["max_position_embeddings"]} positions, tied embeddings, float32 weights.

Tokenizer: byte-level BPE (GPT-2's bytes and pre-tokenizer) with {c["vocab_size"]} tokens, trained on the corpus;
digits never merge, so numbers are single-digit tokens. Special tokens `<|endoftext|>` (BOS, EOS and padding),
`<|im_start|>` and `<|im_end|>`, with a ChatML chat template (never seen in pretraining).

## Training

- **Data:** the definitions of GCIDE, the GNU Collaborative International Dictionary of English (Debian package
  `dict-gcide`, GPL-2.0-or-later), without its quotations: {log["corpus_tokens"]:,} tokens, 1 % held out for
  validation. Sources and versions: `demo/public/data/SOURCES.md`.
- **Run:** {log["steps"]} steps of {log["batch"]} × {log["seq_len"]} tokens ({log["tokens_seen"]:,} tokens seen), AdamW
  (betas 0.9/0.95, weight decay 0.1), peak learning rate {log["lr"]:g} with warmup and cosine decay, gradient
  clipping at 1, seed {log["seed"]}.
- **Result:** final train loss {log["final_train_loss"]:.3f}, validation loss {log["final_val_loss"]:.3f} (perplexity
  {2.718281828 ** log["final_val_loss"]:.1f}).
- **Cost:** {minutes:.0f} minutes wall time on 2 CPU cores, plain torch {log["torch"]} (Debian `python3-torch`),
  {log["threads"]} threads, tokenizer training included.
- **Reproduce:** `python3 scripts/demo_base/corpus.py && python3 scripts/demo_base/pretrain.py --steps {log["steps"]}
  && python3 scripts/demo_base/card.py`. The log of this run is `scripts/demo_base/pretrain_log.json`.

webtune's tests check these weights against an independent plain-torch forward pass
(`test/fixtures/golden/make_golden.py --demo-base`), and this tokenizer against the script's own encoder.

## Intended use

Fine-tuning demos (`demo/public/data/`: dates, fortunes, kjv), tests and teaching. Not for answering questions,
not for any decision, not for production.
"""
    (MODEL / "README.md").write_text(card)
    print(f"wrote {(MODEL / 'README.md').relative_to(REPO)}")


if __name__ == "__main__":
    main()
