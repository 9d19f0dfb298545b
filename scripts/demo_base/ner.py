"""Builds the demo's named-entity-recognition (token classification) task from the King James Bible.

    apt-get install bible-kjv
    python3 scripts/demo_base/ner.py

Writes demo/public/data/ner/{train,test}.jsonl (and its row in demo/public/data/SOURCES.md, which corpus.py
rewrites without it: run this after corpus.py), rows {"tokens": [...], "tags": [...]}: one verse a row, IOB2 tags
over PER (persons) and LOC (places: lands, cities, rivers, mountains, nations named as places). The tags are a silver
standard, derived by the rerunnable procedure below; demo/public/data/ner/README.md is its card.

1. Tokens: each verse is split into words (letters, with inner hyphens) and single punctuation marks; a possessive
   ending is its own token: "Pharaoh's," -> "Pharaoh", "'s", ","; "Jesus'" -> "Jesus", "'".
2. Name slots: a token is a possible name if it is capitalized ([A-Z][a-z]+, with inner hyphens), not in STOP
   (God and his titles, Belial) and, when its lowercase form is also a word of the KJV (And, Then, Lot/lot,
   Sin/sin), only where the token before it is a lowercase word: never at a verse's start or after punctuation.
3. Seeds: PER_SEEDS and LOC_SEEDS below are phrases, matched in every verse of the Bible, whose X slots take a name
   ("X the son of X", "said unto X", "the land of X", "mount X", "in X", ...). A name followed by a possessive
   ('s, ') is not taken, nor is the first X of a phrase that begins with X when "the" or "of" precedes it ("the
   children of Ammon said", "The Jews answered": the name is part of a larger phrase).
4. Gazetteer: a name is PER if the PER seeds took it at least MIN_SEEDS times and at least DOMINANCE times as often
   as the LOC seeds did, and LOC the other way round; a name taken by both kinds of seed without such a majority
   (Benjamin, Gilead, Ephraim: tribe, land and person) is in neither list.
5. Tags: every name slot whose word is in a gazetteer gets its type, wherever it occurs; a run of adjacent tokens of
   one type is one entity (B- then I-: "Simon Peter"), unless a possessive follows the second ("Sarah Abraham's wife":
   two). Everything else is O.
6. Rows: verses of at most MAX_WORDS words. The test split is TEST_ROWS verses of the held-out books (TEST_BOOKS),
   the train split TRAIN_ROWS verses of the other books; in each, a fifth of the rows have no entity and the rest at
   least one, drawn with random.Random(seed). The self-check (check()) runs every time; so does the count print.
"""
import argparse
import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import DATA, REPO, ascii_text, package_version  # noqa: E402

OUT = DATA / "ner"
TYPES = ("PER", "LOC")
MAX_WORDS = 40
TRAIN_ROWS, TEST_ROWS = 1500, 300
EMPTY_FRACTION = 0.2  # of each split's rows: verses with no entity
MIN_SEEDS = 2
DOMINANCE = 3
# Held out for the test split: a narrative book dense in places, a short one, a gospel and the travels of Acts.
TEST_BOOKS = {"Josh": "Joshua", "Ruth": "Ruth", "Mark": "Mark", "Acts": "Acts"}
# Capitalized words that are never names here: God, his names and titles (the seeds take "son of God").
STOP = {"God", "Lord", "Christ", "Ghost", "Holy", "Spirit", "Father", "Son", "Almighty", "Highest", "Amen", "Selah"}
STOP |= {"Belial"}  # "sons of Belial": worthless men, not a person's sons

# Seed phrases: words separated by spaces, "a|b" for alternatives, X for a name slot. Every X of a PER seed is a
# person and every X of a LOC seed a place.
PER_SEEDS = [
    "X the son|daughter|wife|brother|sister|mother|husband|servant of X",
    "son|sons|wife|brother of X",
    "X begat X",
    "said|spake unto X",
    "X said|answered|saith|spake",
    "said|saith X",
    "king X",
    "X the king|prophet|priest|scribe",
    "X his|her son|wife|brother|sister|father|mother|daughter|servant",
]
LOC_SEEDS = [
    "land|lands|city|cities|king|kings|kingdom|queen|wilderness|plain|plains|valley|sea|coasts|borders of X",
    "mount|river X",
    "into X",
    "out of X",
    "in|at X",
]

TOKEN = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*|'s\b|[^\sA-Za-z]")
CAPITALIZED = re.compile(r"[A-Z][a-z]+(?:-[A-Za-z]+)*")
LOWER = re.compile(r"[a-z]+(?:-[a-z]+)*")
POSSESSIVE = {"'s", "'"}


def verses() -> list[tuple[str, str]]:
    """(reference, text) of every verse, as corpus.py reads them: 'Ge1:1', 'In the beginning God created ...'."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    rows = [re.match(r"^(\S+\d+:\d+) (.*)$", l) for l in out.split("\n")]
    return [(m.group(1), ascii_text(m.group(2))) for m in rows if m]


def book(ref: str) -> str:
    return re.sub(r"\d+:\d+$", "", ref)


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text)


def name_slots(tokens: list[str], lowercase_words: set[str]) -> list[bool]:
    """Which tokens may be names (step 2 of the procedure)."""
    return [
        bool(CAPITALIZED.fullmatch(t))
        and t not in STOP
        and (t.lower() not in lowercase_words or (i > 0 and bool(LOWER.fullmatch(tokens[i - 1]))))
        for i, t in enumerate(tokens)
    ]


def compile_seed(seed: str) -> list[set[str] | None]:
    return [None if w == "X" else set(w.split("|")) for w in seed.split()]


def seed_hits(tokens: list[str], slots: list[bool], seed: list[set[str] | None]) -> list[str]:
    """The names that a seed phrase takes in one verse."""
    hits = []
    for start in range(len(tokens) - len(seed) + 1):
        if seed[0] is None and start > 0 and tokens[start - 1] in ("the", "The", "of"):
            continue  # "the children of Ammon said", "the Jews answered": the name is part of a larger phrase
        taken = []
        for k, want in enumerate(seed):
            i = start + k
            if want is None:
                if not slots[i] or (i + 1 < len(tokens) and tokens[i + 1] in POSSESSIVE):
                    break
                taken.append(tokens[i])
            elif tokens[i] not in want:
                break
        else:
            hits += taken
    return hits


def gazetteers(verse_tokens: list[list[str]], slots: list[list[bool]]) -> tuple[dict, dict]:
    counts = {t: Counter() for t in TYPES}
    seeds = {"PER": [compile_seed(s) for s in PER_SEEDS], "LOC": [compile_seed(s) for s in LOC_SEEDS]}
    for tokens, slot in zip(verse_tokens, slots):
        for t in TYPES:
            for seed in seeds[t]:
                counts[t].update(seed_hits(tokens, slot, seed))
    gaz = {}
    for t, other in (("PER", "LOC"), ("LOC", "PER")):
        gaz[t] = {n for n, c in counts[t].items() if c >= MIN_SEEDS and c >= DOMINANCE * counts[other][n]}
    dropped = sorted(
        (n for n in set(counts["PER"]) & set(counts["LOC"]) if n not in gaz["PER"] and n not in gaz["LOC"]),
        key=lambda n: (-(counts["PER"][n] + counts["LOC"][n]), n),
    )
    return gaz, {"counts": counts, "dropped": dropped}


def tag(tokens: list[str], slots: list[bool], gaz: dict) -> list[str]:
    tags = []
    for i, t in enumerate(tokens):
        kind = next((k for k in TYPES if slots[i] and t in gaz[k]), None)
        possessive = i + 1 < len(tokens) and tokens[i + 1] in POSSESSIVE  # "Sarah Abraham's wife": two people
        if kind is None:
            tags.append("O")
        else:
            tags.append(f"I-{kind}" if tags and tags[-1][2:] == kind and not possessive else f"B-{kind}")
    return tags


def entities(tags: list[str]) -> Counter:
    return Counter(t[2:] for t in tags if t.startswith("B-"))


def draw(pool: list[dict], rows: int, rng: random.Random) -> list[dict]:
    """rows verses from pool: a fifth with no entity, the rest with at least one, shuffled."""
    with_entities = [r for r in pool if any(t != "O" for t in r["tags"])]
    without = [r for r in pool if all(t == "O" for t in r["tags"])]
    empty = round(rows * EMPTY_FRACTION)
    picked = rng.sample(with_entities, rows - empty) + rng.sample(without, empty)
    rng.shuffle(picked)
    return picked


def check(train: list[dict], test: list[dict], gaz: dict, lowercase_words: set[str]) -> None:
    """The dataset's checkable properties; raises on the first one that fails."""
    assert not gaz["PER"] & gaz["LOC"], "a name in both gazetteers"
    assert not (gaz["PER"] | gaz["LOC"]) & STOP, "a STOP word in a gazetteer"
    assert len(train) == TRAIN_ROWS and len(test) == TEST_ROWS
    assert not {r["ref"] for r in train} & {r["ref"] for r in test}, "a verse in both splits"
    assert all(book(r["ref"]) not in TEST_BOOKS for r in train), "a held-out book's verse in train"
    assert all(book(r["ref"]) in TEST_BOOKS for r in test), "a test verse outside the held-out books"
    for split in (train, test):
        empty = sum(all(t == "O" for t in r["tags"]) for r in split)
        assert empty == round(len(split) * EMPTY_FRACTION), f"{empty} rows without entities"
        for r in split:
            tokens, tags = r["tokens"], r["tags"]
            assert len(tokens) == len(tags) and len(r["text"].split()) <= MAX_WORDS, r["ref"]
            assert "".join(tokens) == r["text"].replace(" ", ""), f"{r['ref']}: tokens lose text"
            slots = name_slots(tokens, lowercase_words)
            for i, (w, t) in enumerate(zip(tokens, tags)):
                assert t == "O" or t[:2] in ("B-", "I-") and t[2:] in TYPES, f"{r['ref']}: tag {t}"
                assert not t.startswith("I-") or i > 0 and tags[i - 1][2:] == t[2:], f"{r['ref']}: IOB2 at {i}"
                assert t == "O" or (CAPITALIZED.fullmatch(w) and w in gaz[t[2:]]), f"{r['ref']}: {w} is {t}"
                # Complete: every name slot of a gazetteer word is tagged, with its type.
                kind = next((k for k in TYPES if slots[i] and w in gaz[k]), None)
                assert (t == "O") == (kind is None) and (kind is None or t[2:] == kind), f"{r['ref']}: {w} untagged"


def write_sources_row(path: Path) -> None:
    """Adds the task's row to SOURCES.md's table, after its last row, unless it is there already."""
    row = (f"| bible-kjv-text | {package_version('bible-kjv-text')} | The King James Version of the Bible (1611), read "
           "with the bible-kjv program | public domain (copyright expired; see the package's copyright file) | ner/ "
           "named-entity task (silver PER/LOC tags, `scripts/demo_base/ner.py`) |")
    lines = path.read_text().split("\n")
    if row in lines:
        return
    last = max(i for i, l in enumerate(lines) if l.startswith("| "))
    path.write_text("\n".join(lines[: last + 1] + [row] + lines[last + 1 :]))
    print(f"added the ner/ row to {path.relative_to(REPO)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    all_verses = verses()
    lowercase_words = {w for _, text in all_verses for w in re.findall(r"\b[a-z]+\b", text)}
    verse_tokens = [tokenize(text) for _, text in all_verses]
    slots = [name_slots(t, lowercase_words) for t in verse_tokens]
    gaz, info = gazetteers(verse_tokens, slots)
    print(f"gazetteer: {len(gaz['PER'])} PER, {len(gaz['LOC'])} LOC names; "
          f"{len(info['dropped'])} names taken by both kinds of seed dropped, e.g. {', '.join(info['dropped'][:12])}")

    pools = {"train": [], "test": []}
    for (ref, text), tokens, slot in zip(all_verses, verse_tokens, slots):
        if len(text.split()) <= MAX_WORDS:
            split = "test" if book(ref) in TEST_BOOKS else "train"
            pools[split].append({"ref": ref, "text": text, "tokens": tokens, "tags": tag(tokens, slot, gaz)})
    train = draw(pools["train"], TRAIN_ROWS, rng)
    test = draw(pools["test"], TEST_ROWS, rng)
    check(train, test, gaz, lowercase_words)

    train_names = {w for r in train for w, t in zip(r["tokens"], r["tags"]) if t != "O"}
    for name, rows in (("train", train), ("test", test)):
        ents = sum((entities(r["tags"]) for r in rows), Counter())
        empty = sum(all(t == "O" for t in r["tags"]) for r in rows)
        path = OUT / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"tokens": r["tokens"], "tags": r["tags"]}) + "\n" for r in rows))
        tokens = sum(len(r["tokens"]) for r in rows)
        print(f"wrote {path.relative_to(REPO)}: {len(rows)} rows ({empty} without entities), {tokens} tokens, "
              f"{ents['PER']} PER and {ents['LOC']} LOC entities")
    unseen = [w for r in test for w, t in zip(r["tokens"], r["tags"]) if t.startswith("B-") and w not in train_names]
    mentions = sum(t.startswith("B-") for r in test for t in r["tags"])
    print(f"test: {len(unseen)} of {mentions} entities begin with a word never tagged in train")
    books = Counter(TEST_BOOKS[book(r["ref"])] for r in test)
    print("test rows by held-out book: " + ", ".join(f"{b} {books[b]}" for b in TEST_BOOKS.values()))
    write_sources_row(DATA / "SOURCES.md")


if __name__ == "__main__":
    main()
