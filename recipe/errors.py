class RecipeError(Exception):
    """Bad input (config, data, paths): the entry points print it as one line and exit with status 2."""
