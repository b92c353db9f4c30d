"""JSON Lines: the format of every log the recipe writes (metrics, samples, predictions).

A kill can stop a write anywhere. Whole files are therefore written aside and renamed into place
(``write_atomic``), and an append cut off mid-line leaves a last line without its newline: readers
drop that one line, and a resumed run's trim rewrites the file without it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path


class DamagedJsonl(ValueError):
    """A line other than the last is not a JSON object: the file was edited or is not JSON Lines."""

    def __init__(self, path: Path, number: int):
        super().__init__(f"{path}:{number} is not a JSON object")
        self.path, self.number = path, number


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """``path`` holds either its old content or all of ``data``, whenever the process dies.

    Written to a hidden file beside it, flushed to disk and renamed over it (a rename is atomic on one
    file system); a failed write (a full disk) removes the partial file and leaves ``path`` as it was.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of ``path``; a missing file reads as no records, a last line cut off by a kill is left out.

    Any other line that is not a JSON object raises DamagedJsonl (a ValueError) naming it.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    # split leaves b"" after a final newline; anything else there is a line whose append was cut off.
    complete, last = lines[:-1], lines[-1]
    rows = [_record(line, path, number) for number, line in enumerate(complete, 1) if line.strip()]
    if last.strip():
        try:
            rows.append(_record(last, path, len(lines)))
        except DamagedJsonl:
            pass
    return rows


def _record(line: bytes, path: Path, number: int) -> dict:
    try:
        row = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise DamagedJsonl(path, number) from None
    if not isinstance(row, dict):
        raise DamagedJsonl(path, number)
    return row


def jsonl_text(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, jsonl_text(rows))


def append_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    with open(path, "a") as f:
        f.write(jsonl_text(rows))


def trim_jsonl(path: str | Path, last_step: int) -> None:
    """Drop records logged after ``last_step`` (a resumed run logs those steps again) and a cut-off last line."""
    if Path(path).exists():
        write_jsonl([row for row in read_jsonl(path) if row.get("step", 0) <= last_step], path)
