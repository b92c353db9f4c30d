import difflib
from collections.abc import Iterable


class RecipeError(Exception):
    """Bad input (config, data, paths): the entry points print it as one line and exit with status 2."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at ``limit``."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def closest(name: str, valid: Iterable[str], prefix: str = "", otherwise: str | None = None) -> str:
    """The hint for an unknown ``name``: the closest of ``valid`` (with ``prefix``), else ``otherwise``, else all."""
    valid = list(valid)
    match = difflib.get_close_matches(name, valid, n=1)
    if match:
        return f"did you mean '{prefix}{match[0]}'?"
    return otherwise or f"valid keys: {', '.join(valid)}"
