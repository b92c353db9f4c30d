"""JSON Lines: the format of every log the recipe writes (metrics, samples, predictions)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of ``path``; a missing file reads as no records."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def append_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def trim_jsonl(path: str | Path, last_step: int) -> None:
    """Drop records logged after ``last_step``: a resumed run logs those steps again."""
    if Path(path).exists():
        write_jsonl([row for row in read_jsonl(path) if row.get("step", 0) <= last_step], path)
