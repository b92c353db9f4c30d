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
    """A line other than the last (any, read strictly) is not a JSON object: the file was edited or is not JSON Lines.

    Its message is ``<path>:<line>: <problem>``, the problem in words (``not valid JSON (...)``, ``a JSON array,
    not an object``).
    """

    def __init__(self, path: Path, number: int, problem: str):
        super().__init__(f"{path}:{number}: {problem}")
        self.path, self.number, self.problem = path, number, problem


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


def read_jsonl(path: str | Path, strict: bool = False) -> list[dict]:
    """Every record of ``path``; a missing file reads as no records, a last line cut off by a kill is left out.

    Any other line that is not a JSON object raises DamagedJsonl (a ValueError) naming it; with ``strict``
    the last line too, for files no kill of the recipe's writes (data the user gives).
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
            if strict:
                raise
    return rows


def json_kind(value: object) -> str:
    """A parsed JSON value's kind in JSON's words: "a JSON array", "null"."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    for kind, name in ((dict, "object"), (list, "array"), (str, "string")):
        if isinstance(value, kind):
            return f"a JSON {name}"
    return "a JSON number"


def invalid_json(error: json.JSONDecodeError) -> str:
    """The problem in words; json's own end in "at" where they point ("Unterminated string starting at")."""
    return f"not valid JSON ({error.msg.removesuffix(' at')} at column {error.colno})"


def _record(line: bytes, path: Path, number: int) -> dict:
    try:
        row = json.loads(line)
    except UnicodeDecodeError:
        raise DamagedJsonl(path, number, "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise DamagedJsonl(path, number, invalid_json(error)) from None
    if not isinstance(row, dict):
        raise DamagedJsonl(path, number, f"{json_kind(row)}, not an object")
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
