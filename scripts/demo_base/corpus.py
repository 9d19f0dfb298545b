"""Extracts and cleans the texts of the embedded demo model from Debian packages.

    apt-get install dict-gcide fortunes bible-kjv
    python3 scripts/demo_base/corpus.py --out build/demo_base

Writes, all deterministic for a given seed and package versions (SOURCES.md records them):
- <out>/pretrain.txt: GCIDE definitions, one entry a line: the base model's pretraining corpus;
- demo/public/data/reference.jsonl: GCIDE entries held out of pretraining, for the forgetting check;
- demo/public/data/replay.jsonl: a sample of the pretraining entries, the general text a run replays against
  forgetting (never the reference's entries, which pretraining did not see either);
- demo/public/data/fortunes/{train,test}.jsonl: fortune-cookie texts labelled by their category file;
- demo/public/data/kjv/{train,test}.jsonl: King James Bible passages, the style/domain task.
The date task has no source text: dates.py generates it.

The pretraining corpus shares no text with the demo tasks: GCIDE's quotations (which cite the Bible and poets) are
dropped, and fortunes and the Bible are used only by the tasks.
"""
import argparse
import gzip
import json
import random
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "demo" / "public" / "data"
GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
FORTUNES = Path("/usr/share/games/fortunes")
FORTUNE_CLASSES = ["computers", "food", "law", "love"]
FORTUNE_MAX_CHARS = 160
MAX_CHARS = 600  # reference entries and Bible passages: about 150 tokens at most
REPLAY_ROWS = 2000
REPLAY_MAX_CHARS = 300  # short entries: a replayed row costs about as much as a task row


def ascii_text(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", "".join(c for c in text if 32 <= ord(c) < 127 or c in "\n\t")).strip()


def gcide_entries() -> list[str]:
    """Each dictionary entry as one line: 'Headword, part of speech. Definitions...' without markup or quotations."""
    raw = gzip.open(GCIDE, "rt", encoding="utf-8", errors="replace").read()
    entries, head, body = [], None, []

    def flush():
        if head and not head.startswith("00-") and body:
            text = ascii_text(f"{head} " + " ".join(body))
            if len(text) > 40:
                entries.append(text)

    for line in raw.split("\n"):
        if line and not line[0].isspace():
            flush()
            word, _, rest = line.partition(" \\")
            rest = rest.split("\\", 1)[1] if "\\" in rest else rest
            head, body = word.strip(), [rest]
            continue
        indent = len(line) - len(line.lstrip())
        stripped = line.strip()
        if indent >= 8 or stripped.startswith("--") or not stripped:
            continue  # quotations and their citations
        body.append(stripped)
    flush()
    cleaned = []
    for e in entries:
        while re.search(r"\[[^\[\]]*\]", e):  # etymologies, sources, [Obs.], nested accent marks
            e = re.sub(r"\[[^\[\]]*\]", "", e)
        e = re.sub(r"\([^()]*[\"`][^()]*\)", "", e)  # pronunciations in parentheses
        e = re.sub(r"\{([^}]*)\}", r"\1", e)  # cross-reference braces
        e = re.sub(r"\\[^\\]*\\", "", e)  # pronunciations
        e = re.sub(r"\s+([,.;:])", r"\1", re.sub(r"\s+", " ", e)).strip(" ,")
        if len(e) > 40 and "--" not in e:
            cleaned.append(e)
    return cleaned


def fortunes(category: str) -> list[str]:
    text = (FORTUNES / category).read_text(encoding="latin-1")
    out = []
    for cookie in text.split("\n%\n"):
        lines = [l for l in cookie.split("\n") if not re.match(r"^\s+--", l) and not re.match(r"^\s{8,}\S", l)]
        body = ascii_text(" ".join(lines))
        if 20 <= len(body) <= FORTUNE_MAX_CHARS:
            out.append(body)
    return sorted(set(out))


def bible_passages(verses_per_passage: int = 3) -> list[str]:
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    verses = [re.sub(r"^\S+\d+:\d+ ", "", l).strip() for l in out.split("\n") if re.match(r"^\S+\d+:\d+ ", l)]
    return [" ".join(verses[i : i + verses_per_passage]) for i in range(0, len(verses), verses_per_passage)]


SOURCES = [
    ("dict-gcide", "GCIDE, the GNU Collaborative International Dictionary of English (Webster's 1913 and WordNet)",
     "GPL-2.0-or-later", "pretraining corpus (definitions only), replay.jsonl (a sample of it) and reference.jsonl (held-out entries)"),
    ("fortunes", "fortune-mod's cookie files computers, food, law and love", "BSD-3-Clause (fortune-mod)",
     "fortunes/ classification task"),
    ("bible-kjv-text", "The King James Version of the Bible (1611), read with the bible-kjv program",
     "public domain (copyright expired; see the package's copyright file)", "kjv/ style task"),
]


def package_version(name: str) -> str:
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=True).stdout


def write_sources(path: Path) -> None:
    lines = [
        "# Sources of the demo model and datasets",
        "",
        "Written by `scripts/demo_base/corpus.py` from the Debian packages installed when it ran. The date task",
        "(`dates/`) is generated by `scripts/demo_base/dates.py` and has no source text.",
        "",
        "| Debian package | version | what | license | used for |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {p} | {package_version(p)} | {what} | {lic} | {use} |" for p, what, lic, use in SOURCES]
    lines += [
        "",
        "The pretraining corpus shares no text with the tasks: GCIDE's quotations (many cite the Bible) are dropped,",
        "and the fortunes and the Bible are used by the tasks only.",
        "",
    ]
    path.write_text("\n".join(lines))
    print(f"wrote {path.relative_to(REPO)}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {path.relative_to(REPO)}: {len(rows)} rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "build" / "demo_base"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    entries = gcide_entries()
    rng.shuffle(entries)
    # The first 200 entries are held out; the reference keeps those short enough to score whole.
    reference = [e for e in entries[:200] if len(e) <= MAX_CHARS]
    pretrain = entries[200:]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pretrain.txt").write_text("\n".join(pretrain) + "\n")
    print(f"wrote {out / 'pretrain.txt'}: {len(pretrain)} entries, {sum(map(len, pretrain)) / 1e6:.1f} M characters")
    write_jsonl(DATA / "reference.jsonl", [{"text": t} for t in reference])
    # Its own generator, so that adding it changed none of the other files' draws.
    short = [e for e in pretrain if len(e) <= REPLAY_MAX_CHARS]
    replay = random.Random(args.seed + 1).sample(short, REPLAY_ROWS)
    write_jsonl(DATA / "replay.jsonl", [{"text": t} for t in replay])

    train, test = [], []
    by_class = {label: fortunes(label) for label in FORTUNE_CLASSES}
    per_class = min(map(len, by_class.values()))  # balanced: the majority baseline is chance
    for label, texts in by_class.items():
        rng.shuffle(texts)
        texts = texts[:per_class]
        cut = len(texts) // 5
        test += [{"text": t, "label": label} for t in texts[:cut]]
        train += [{"text": t, "label": label} for t in texts[cut:]]
    rng.shuffle(train)
    rng.shuffle(test)
    write_jsonl(DATA / "fortunes" / "train.jsonl", train)
    write_jsonl(DATA / "fortunes" / "test.jsonl", test)

    passages = [p for p in bible_passages() if len(p) <= MAX_CHARS]
    rng.shuffle(passages)
    write_jsonl(DATA / "kjv" / "test.jsonl", [{"text": t} for t in passages[:100]])
    write_jsonl(DATA / "kjv" / "train.jsonl", [{"text": t} for t in passages[100:1100]])
    write_sources(DATA / "SOURCES.md")


if __name__ == "__main__":
    main()
