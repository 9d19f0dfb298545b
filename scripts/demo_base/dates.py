"""Generates the date task: an ISO date in, the date written out in English as the only correct answer.

    python3 scripts/demo_base/dates.py   # demo/public/data/dates/{train,test,shifted}.jsonl

The test dates are drawn apart from the training dates (no date is in both), so exact match on test measures the
rule, not memory. The base model has never seen the prompt format.
"""
import datetime
import json
import random
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "demo" / "public" / "data" / "dates"
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def row(d: datetime.date) -> dict:
    return {"prompt": f"Date: {d.isoformat()}\nWritten out:", "completion": f" {MONTHS[d.month - 1]} {d.day}, {d.year}"}


def main(seed: int = 0, n_train: int = 3000, n_test: int = 200) -> None:
    rng = random.Random(seed)
    first, last = datetime.date(1900, 1, 1).toordinal(), datetime.date(2099, 12, 31).toordinal()
    days = rng.sample(range(first, last + 1), n_train + n_test)
    dates = [datetime.date.fromordinal(d) for d in days]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, part in (("test", dates[:n_test]), ("train", dates[n_test:])):
        (OUT / f"{name}.jsonl").write_text("".join(json.dumps(row(d)) + "\n" for d in part))
        print(f"wrote {OUT.relative_to(REPO)}/{name}.jsonl: {len(part)} rows")


def shifted(seed: int = 1, n: int = 400) -> None:
    """Dates of the two centuries before the task's (1700-1899), for the drift check: the same format and rule, on
    inputs the training data never reaches (`webtune monitor --data demo/public/data/dates/shifted.jsonl`)."""
    rng = random.Random(seed)
    first, last = datetime.date(1700, 1, 1).toordinal(), datetime.date(1899, 12, 31).toordinal()
    dates = [datetime.date.fromordinal(d) for d in rng.sample(range(first, last + 1), n)]
    (OUT / "shifted.jsonl").write_text("".join(json.dumps(row(d)) + "\n" for d in dates))
    print(f"wrote {OUT.relative_to(REPO)}/shifted.jsonl: {len(dates)} rows")


if __name__ == "__main__":
    main()
    shifted()
