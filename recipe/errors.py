class RecipeError(Exception):
    """Bad input (config, data, paths): the entry points print it as one line and exit with status 2."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type's name when it has none), cut at ``limit``."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]
