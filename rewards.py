"""The answer format and the five rule-based rewards that teach it.

This module is the single source of truth for the format: the system prompt that asks for it,
the tag parsing, GSM8K gold parsing and number comparison. Training rewards and evaluation both
call the same functions, so a completion is judged the same way everywhere.

Every reward follows TRL's contract, ``fn(prompts, completions, answer, **kwargs) -> list[float]``,
is pure (no printing, no I/O) and never raises on any string. TRL logs each one under its function
name (``rewards/correctness/mean``). The values keep the notebook's scale, so the best total
is 0.5 + 0.5 + 0.5 + 0.5 + 2.0 = 4.0 and the correctness curve is comparable with the notebook's.

Bugs of the notebook fixed here, each with a regression row in tests/test_rewards.py:
- format regexes without DOTALL never matched multi-line reasoning;
- strict format needed a newline after ``</answer>``, which generation strips with the EOS token;
- xmlcount subtracted the whole completion's length when no newline followed ``</answer>``;
- ``str.isdigit`` rejected ``-5`` and ``1,000``;
- correctness compared strings, so ``1,000`` != ``1000`` and ``$18`` != ``18``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

# The notebook's system prompt, verbatim, including its leading and trailing newline.
SYSTEM_PROMPT = """
Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
...
</answer>
"""

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
SOFT_FORMAT_RE = re.compile(r"\s*<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", re.DOTALL)
STRICT_FORMAT_RE = re.compile(r"<reasoning>\n.+?\n</reasoning>\n<answer>\n.+?\n</answer>\s*", re.DOTALL)
FORMAT_TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")

# A number as people write it: optional sign (not a hyphen inside "5-3"), optional "$",
# thousands separators only in groups of three, optional decimals.
NUMBER_RE = re.compile(r"(?<![\w.)])(-?)\s*\$?\s*(\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
GOLD_MARKER = "####"


def completion_text(completion: Any) -> str:
    """The text of a completion, whether TRL passes a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        return "".join(completion_text(message) for message in completion)
    return "" if completion is None else str(completion)


def extract_answer(text: str) -> str | None:
    """The content of the last complete ``<answer>…</answer>`` block, stripped, or None."""
    blocks = ANSWER_RE.findall(text)
    return blocks[-1].strip() if blocks else None


def _to_decimal(sign: str, digits: str) -> Decimal | None:
    try:
        return Decimal(sign + digits.replace(",", ""))
    except InvalidOperation:
        return None


def parse_number(text: str | None) -> Decimal | None:
    """The last number written in ``text`` ("$1,000." -> 1000, "-3" -> -3), or None."""
    if not text:
        return None
    matches = NUMBER_RE.findall(text)
    return _to_decimal(*matches[-1]) if matches else None


def parse_integer(text: str | None) -> Decimal | None:
    """``text`` as an integer if it is nothing but one integer-valued number, else None.

    Accepts a sign, "$", thousands separators and a trailing full stop ("-1,200.", "$18", "18.0").
    """
    if not text:
        return None
    body = text.strip().removesuffix(".").strip()
    match = NUMBER_RE.fullmatch(body)
    if match is None:
        return None
    value = _to_decimal(*match.groups())
    return value if value is not None and value == value.to_integral_value() else None


def split_gsm8k(answer: str) -> tuple[str, str]:
    """A GSM8K answer as (reasoning, gold as written after ``####``); no marker: ("", the whole answer)."""
    if GOLD_MARKER not in answer:
        return "", answer.strip()
    reasoning, gold = answer.rsplit(GOLD_MARKER, 1)
    return reasoning.strip(), gold.strip()


def parse_gold(answer: str | None) -> Decimal | None:
    """The gold number of a GSM8K answer ("... #### 1,234" -> 1234); a bare number works too."""
    if not answer:
        return None
    if GOLD_MARKER in answer:
        return parse_number(split_gsm8k(answer)[1])
    match = NUMBER_RE.fullmatch(answer.strip().removesuffix("."))
    return _to_decimal(*match.groups()) if match else None


def same_number(a: Decimal | None, b: Decimal | None) -> bool:
    """Numeric equality: 18.0 == 18, -3 != 3; None never equals anything."""
    return a is not None and b is not None and a == b


def is_correct(text: str, gold: str | None) -> bool:
    """Whether the last number in the completion's answer block equals the gold number."""
    return same_number(parse_number(extract_answer(text)), parse_gold(gold))


def xml_count(text: str) -> float:
    """0.125 for each format tag written once, minus 0.001 per character after the last ``</answer>``.

    The penalty is capped at what the answer tags earned, so the score stays within [0, 0.5].
    """
    score = 0.0
    if text.count("<reasoning>\n") == 1:
        score += 0.125
    if text.count("\n</reasoning>\n") == 1:
        score += 0.125
    answer_score = 0.0
    if text.count("\n<answer>\n") == 1:
        answer_score += 0.125
    if text.count("\n</answer>") == 1:
        answer_score += 0.125
    if "</answer>" in text:
        trailing = text.rsplit("</answer>", 1)[1].strip()
        answer_score = max(0.0, answer_score - 0.001 * len(trailing))
    return score + answer_score


def has_soft_format(text: str) -> bool:
    """A reasoning block followed by an answer block; whitespace between and text after are fine."""
    return SOFT_FORMAT_RE.match(text) is not None


def has_strict_format(text: str) -> bool:
    """Exactly the prompt's layout, each tag once, ending at ``</answer>`` (trailing whitespace ok)."""
    if any(text.count(tag) != 1 for tag in FORMAT_TAGS):
        return False
    return STRICT_FORMAT_RE.fullmatch(text) is not None


REWARDS: dict[str, Callable[..., list[float]]] = {}
MAX_REWARD: dict[str, float] = {}


def reward(best: float):
    """Register a reward under its function name (TRL's metric name) with the best score it gives."""

    def register(fn):
        REWARDS[fn.__name__], MAX_REWARD[fn.__name__] = fn, best
        return fn

    return register


@reward(best=0.5)
def xmlcount(prompts, completions, answer=None, **kwargs) -> list[float]:
    """Partial credit for each tag of the format (0 to 0.5); see ``xml_count``."""
    return [xml_count(completion_text(c)) for c in completions]


@reward(best=0.5)
def soft_format(prompts, completions, answer=None, **kwargs) -> list[float]:
    """0.5 if a reasoning block is followed by an answer block, else 0."""
    return [0.5 if has_soft_format(completion_text(c)) else 0.0 for c in completions]


@reward(best=0.5)
def strict_format(prompts, completions, answer=None, **kwargs) -> list[float]:
    """0.5 if the completion is exactly the system prompt's layout, else 0."""
    return [0.5 if has_strict_format(completion_text(c)) else 0.0 for c in completions]


@reward(best=0.5)
def integer_answer(prompts, completions, answer=None, **kwargs) -> list[float]:
    """0.5 if the answer block holds a single integer (negatives and "1,000" count), else 0."""
    return [0.5 if parse_integer(extract_answer(completion_text(c))) is not None else 0.0 for c in completions]


@reward(best=2.0)
def correctness(prompts, completions, answer, **kwargs) -> list[float]:
    """2.0 if the answer block's number equals the gold number, else 0."""
    return [2.0 if is_correct(completion_text(c), gold) else 0.0 for c, gold in zip(completions, answer, strict=True)]
