"""Converts Debian's wordnet-base package (WordNet 3.0) into the synonym lexicon that EDA augmentation reads.

    cd /tmp && apt-get download wordnet-base
    python3 scripts/lexicon/wordnet.py /tmp/wordnet-base_*.deb   # demo/public/data/lexicon/{synonyms.tsv,LICENSE}

It also adds the lexicon's row to demo/public/data/SOURCES.md, which scripts/demo_base/corpus.py rewrites without
it: run this after corpus.py.

For every single-word lowercase lemma (two letters or more, an inner hyphen or apostrophe allowed; single letters
are units and numerals in WordNet: "m" for meter, "x" for ten), its synonyms are the other such lemmas of its first
synset. index.<pos> lists a lemma's synsets in order of sense frequency, so the first is its most common meaning;
taking only that one keeps EDA's replacements mostly meaning-preserving (all senses would turn "job" into "caper"
and "big" into "bighearted"). Of the parts of speech, only the one whose first sense is tagged most often in
WordNet's sense counts (cntlist.rev) is used, or all of them when tied or untagged: otherwise the rare noun senses
of adjectives would give "glad" -> "gladiolus" and "fast" -> "fasting". A lemma written with a capital in that
synset (a proper noun: "march" -> "March") is skipped there. Words left with no synonym are dropped. The output is
sorted and has no randomness: the same package gives the same bytes.

Standard library only; dpkg-deb (from dpkg) reads the package.
"""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "demo" / "public" / "data" / "lexicon"
POS = ("noun", "verb", "adj", "adv")
WORD = re.compile(r"^[a-z][a-z]+$|^[a-z]+(?:['-][a-z]+)+$")  # single letters are units and numerals: "m", "x"
ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # data.adj's syntactic markers, e.g. "big(a)"
SS_TYPE = {"1": "noun", "2": "verb", "3": "adj", "4": "adv", "5": "adj"}  # a sense key's synset type; 5: satellite


def first_sense_counts(cntlist: Path) -> dict[tuple[str, str], int]:
    """(lemma, pos) -> how often its first sense was tagged in the semantic concordances, from cntlist.rev."""
    out: dict[tuple[str, str], int] = {}
    for line in cntlist.read_text(encoding="latin-1").splitlines():
        key, sense, count = line.split()  # lemma%ss_type:lex_filenum:lex_id:head_word:head_id sense_number tag_cnt
        if sense == "1":
            lemma, rest = key.split("%")
            out[(lemma, SS_TYPE[rest[0]])] = int(count)
    return out


def first_senses(index: Path) -> dict[str, int]:
    """lemma -> byte offset of its most frequent synset, from index.<pos>."""
    out: dict[str, int] = {}
    for line in index.read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):  # the license header
            continue
        fields = line.split()
        lemma, p_cnt = fields[0], int(fields[3])
        # lemma pos synset_cnt p_cnt [ptr_symbol]*p_cnt sense_cnt tagsense_cnt offset...
        out[lemma] = int(fields[4 + p_cnt + 2])
    return out


def synset_words(data: bytes, offset: int) -> list[str]:
    """The lemmas of the synset at `offset` of data.<pos>, as written (case kept, markers removed)."""
    end = data.index(b"\n", offset)
    fields = data[offset:end].decode("latin-1").split()
    count = int(fields[3], 16)  # w_cnt is two hex digits
    return [ADJ_MARKER.sub("", fields[4 + 2 * i]) for i in range(count)]


def dominant(senses: dict[str, dict[str, int]], counts: dict[tuple[str, str], int]) -> dict[str, set[str]]:
    """lemma -> the parts of speech whose first sense is tagged most often (all of them tied or untagged)."""
    out: dict[str, set[str]] = {}
    for pos, lemmas in senses.items():
        for lemma in lemmas:
            out.setdefault(lemma, set()).add(pos)
    for lemma, parts in out.items():
        best = max(counts.get((lemma, pos), 0) for pos in parts)
        out[lemma] = {pos for pos in parts if counts.get((lemma, pos), 0) == best}
    return out


def synonyms(wordnet: Path) -> dict[str, list[str]]:
    """word -> its synonyms from the first sense of its dominant part(s) of speech, in WordNet's order."""
    senses = {pos: first_senses(wordnet / f"index.{pos}") for pos in POS}
    keep = dominant(senses, first_sense_counts(wordnet / "cntlist.rev"))
    out: dict[str, list[str]] = {}
    for pos in POS:
        data = (wordnet / f"data.{pos}").read_bytes()
        for lemma, offset in senses[pos].items():
            if not WORD.match(lemma) or pos not in keep[lemma]:
                continue
            words = synset_words(data, offset)
            if lemma not in words:  # written with a capital here: a proper noun
                continue
            found = out.setdefault(lemma, [])
            for word in words:
                if word != lemma and WORD.match(word) and word not in found:
                    found.append(word)
    return {word: syns for word, syns in out.items() if syns}


def license_text(copyright_file: Path) -> str:
    """The WordNet3.0 license paragraph of Debian's copyright file, unindented."""
    lines = copyright_file.read_text(encoding="utf-8").splitlines()
    start = lines.index("License: WordNet3.0") + 1
    body = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        body.append("" if line.strip() == "." else line[1:])
    return "\n".join(body).rstrip() + "\n"


def write_sources_row(path: Path, version: str) -> None:
    """Adds the lexicon's row to SOURCES.md's table, after its last row, unless it is there already."""
    row = (f"| wordnet-base | {version} | WordNet 3.0, Princeton's lexical database of English | WordNet 3.0 license "
           "(BSD-like; lexicon/LICENSE) | lexicon/synonyms.tsv, synonyms for EDA augmentation "
           "(`scripts/lexicon/wordnet.py`) |")
    lines = path.read_text().split("\n")
    if row in lines:
        return
    last = max(i for i, line in enumerate(lines) if line.startswith("| "))
    path.write_text("\n".join(lines[: last + 1] + [row] + lines[last + 1 :]))
    print(f"added the lexicon/ row to {path.relative_to(REPO)}")


def main(deb: str) -> None:
    version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True, capture_output=True, text=True)
    version = version.stdout.strip()
    with tempfile.TemporaryDirectory() as root:
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        table = synonyms(Path(root) / "usr/share/wordnet")
        license = license_text(Path(root) / "usr/share/doc/wordnet-base/copyright")
    header = f"# webtune synonyms from WordNet 3.0 (Debian wordnet-base {version}), scripts/lexicon/wordnet.py\n"
    lines = "".join(f"{word}\t{' '.join(table[word])}\n" for word in sorted(table))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "synonyms.tsv").write_text(header + lines, encoding="utf-8")
    (OUT / "LICENSE").write_text(license, encoding="utf-8")
    size = (OUT / "synonyms.tsv").stat().st_size
    print(f"wrote {(OUT / 'synonyms.tsv').relative_to(REPO)}: {len(table)} words, {size} bytes (wordnet-base {version})")
    write_sources_row(OUT.parent / "SOURCES.md", version)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 scripts/lexicon/wordnet.py wordnet-base_<version>_all.deb")
    main(sys.argv[1])
