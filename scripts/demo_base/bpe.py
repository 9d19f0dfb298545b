"""A byte-level BPE tokenizer (GPT-2's bytes and pre-tokenizer), trained here and written as Hugging Face files.

Digits never merge, so every number is a sequence of single-digit tokens, as in Llama's tokenizers: a date's digits
are then separate tokens that a small model can copy and map.
"""
import json
from collections import Counter, defaultdict
from pathlib import Path

import regex

GPT2_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_CHARS = bytes_to_unicode()


def pre_tokens(text: str) -> list[str]:
    return ["".join(BYTE_CHARS[b] for b in piece.encode("utf-8")) for piece in GPT2_SPLIT.findall(text)]


def train_bpe(texts, vocab_size: int) -> list[tuple[str, str]]:
    """Merges learned from the pre-token counts of `texts`, most frequent pair first (ties broken by the pair)."""
    counts = Counter(t for text in texts for t in pre_tokens(text))
    words = [list(w) for w in counts]
    freq = list(counts.values())
    pairs: Counter = Counter()
    where = defaultdict(set)
    for i, w in enumerate(words):
        for pair in zip(w, w[1:]):
            pairs[pair] += freq[i]
            where[pair].add(i)
    mergeable = lambda p: not any(c.isdigit() for c in p[0] + p[1])
    merges = []
    n_merges = vocab_size - len(SPECIAL_TOKENS) - 256
    while len(merges) < n_merges:
        best = max((p for p, c in pairs.items() if c > 0 and mergeable(p)), key=lambda p: (pairs[p], p), default=None)
        if best is None:
            break
        merges.append(best)
        joined = best[0] + best[1]
        for i in list(where[best]):
            w = words[i]
            for pair in zip(w, w[1:]):
                pairs[pair] -= freq[i]
            j, out = 0, []
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == best:
                    out.append(joined)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for pair in zip(out, out[1:]):
                pairs[pair] += freq[i]
                where[pair].add(i)
        del pairs[best]
    return merges


class Encoder:
    """Encodes text with learned merges, applied lowest rank first as Hugging Face's BPE does."""

    def __init__(self, merges: list[tuple[str, str]]):
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.vocab = vocabulary(merges)
        self.cache: dict[str, list[int]] = {}

    def word(self, token: str) -> list[int]:
        if token in self.cache:
            return self.cache[token]
        symbols = list(token)
        while len(symbols) > 1:
            ranked = [(self.ranks.get(p, 1 << 30), k) for k, p in enumerate(zip(symbols, symbols[1:]))]
            rank, k = min(ranked)
            if rank == 1 << 30:
                break
            symbols[k : k + 2] = [symbols[k] + symbols[k + 1]]
        ids = [self.vocab[s] for s in symbols]
        self.cache[token] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        return [i for t in pre_tokens(text) for i in self.word(t)]


def vocabulary(merges) -> dict[str, int]:
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for b in range(256):
        vocab[BYTE_CHARS[b]] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    return vocab


def write_tokenizer(folder: Path, merges, model_max_length: int) -> None:
    vocab = vocabulary(merges)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i, t in enumerate(SPECIAL_TOKENS)
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {**byte_level, "trim_offsets": False},
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    config = {
        "add_prefix_space": False,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": model_max_length,
        "tokenizer_class": "GPT2Tokenizer",
        "vocab_size": len(vocab),
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, indent=1) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
