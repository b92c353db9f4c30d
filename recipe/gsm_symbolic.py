"""GSM-Symbolic as an evaluation set: GSM8K test questions with fresh numbers, from the reasoning-gym package.

Apple's GSM-Symbolic (Mirzadeh et al., 2024) turned GSM8K test questions into templates; reasoning-gym
ships 85 of them as ``gsm_symbolic``. A fixed seed gives the same questions every time, and a model
that memorised GSM8K's numbers gains nothing here. The templates come from the test split, so this is
for evaluation only: training on it would leak GSM8K test.
"""

from __future__ import annotations

import importlib.util
import typing

from recipe.errors import RecipeError

NAME = "gsm-symbolic"
PACKAGE = "reasoning-gym"
SEED = 42
DEFAULT_SIZE = 200
# reasoning-gym appends this for its own scorer; the recipe's system prompt already says how to answer,
# and the question then reads as GSM-Symbolic wrote it.
SUFFIX = " Give the result as your final answer. Do not include units."


def size(limit: int | None) -> int:
    """Questions to generate: --limit (data.limit) when given, else DEFAULT_SIZE."""
    return limit or DEFAULT_SIZE


def to_row(example: dict, question_field: str = "question", answer_field: str = "answer") -> dict:
    """One reasoning-gym example as a recipe row; the bare-number answer is what rewards.parse_gold reads."""
    return {question_field: str(example["question"]).removesuffix(SUFFIX), answer_field: str(example["answer"])}


def generate(seed: int, n: int) -> list[dict]:
    """``n`` examples of reasoning-gym's gsm_symbolic; one line if the package is missing."""
    if importlib.util.find_spec("reasoning_gym") is None:
        raise RecipeError(f"data.dataset={NAME} needs the {PACKAGE} package: pip install {PACKAGE}")
    import reasoning_gym

    return list(reasoning_gym.create_dataset("gsm_symbolic", seed=seed, size=n))


def load(
    limit: int | None, question_field: str, answer_field: str, make: typing.Callable[[int, int], list[dict]] = generate
):
    """The rows as a datasets.Dataset with the config's column names, as load_rows returns for files."""
    import datasets

    return datasets.Dataset.from_list([to_row(e, question_field, answer_field) for e in make(SEED, size(limit))])


def describe(limit: int | None) -> dict:
    """What summary.json records to say which questions these were."""
    from importlib.metadata import version

    return {"name": NAME, "generator": f"{PACKAGE} {version(PACKAGE)} gsm_symbolic", "seed": SEED, "size": size(limit)}
