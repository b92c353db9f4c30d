"""Tables of behaviour for rewards.py: the answer format, its parsers and the five rewards.

Each table row is one completion (or one string) and the exact value the code must give for it.
Rows whose id starts with ``notebook-bug-`` pin a bug of the notebook that rewards.py fixes.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import (
    MAX_REWARD,
    REWARDS,
    SYSTEM_PROMPT,
    completion_text,
    extract_answer,
    has_soft_format,
    has_strict_format,
    parse_gold,
    parse_integer,
    parse_number,
    same_number,
    xml_count,
)

REWARD_NAMES = list(REWARDS)
TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")


def layout(reasoning: str = "Half of 36 is 18.", answer: str = "18", *, before: str = "", after: str = "") -> str:
    """A completion in the system prompt's layout, with optional text around it."""
    return f"{before}<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>{after}"


def score(name: str, completion, gold: str | None = "#### 18") -> float:
    """One reward on one completion, called the way TRL calls it."""
    [value] = REWARDS[name](prompts=["Q"], completions=[completion], answer=[gold])
    return value


def exactly(value: float):
    return pytest.approx(value, abs=1e-12)


PERFECT = layout()
LONG_REASONING = "\n".join(f"Step {i}: add {i} apples to the basket, which now holds more apples." for i in range(40))


# ---------------------------------------------------------------------------------------------
# 1. Regressions for the notebook's bugs.
# ---------------------------------------------------------------------------------------------

SEED_BUGS = [
    # The notebook's format regexes had no DOTALL, so "." stopped at the first newline of the reasoning.
    pytest.param(
        "soft_format",
        layout("First, 12 + 6 = 18.\nSo the answer is 18."),
        "#### 18",
        0.5,
        id="notebook-bug-multiline-reasoning-soft-format",
    ),
    pytest.param(
        "strict_format",
        layout("First, 12 + 6 = 18.\nSo the answer is 18."),
        "#### 18",
        0.5,
        id="notebook-bug-multiline-reasoning-strict-format",
    ),
    # The notebook's strict regex demanded "\n" after </answer>; generation ends at EOS right after the tag.
    pytest.param(
        "strict_format",
        layout(after=""),
        "#### 18",
        0.5,
        id="notebook-bug-strict-ends-at-answer-tag-no-trailing-newline",
    ),
    # The notebook subtracted 0.001 * len(whole completion) when no "\n" followed </answer>.
    pytest.param(
        "xmlcount",
        layout(LONG_REASONING),
        "#### 18",
        0.5,
        id="notebook-bug-xmlcount-long-completion-ending-at-answer-tag",
    ),
    pytest.param(
        "xmlcount",
        layout(LONG_REASONING, after="\n"),
        "#### 18",
        0.5,
        id="notebook-bug-xmlcount-long-completion-trailing-newline",
    ),
    # The notebook used str.isdigit, which rejects signs, thousands separators and currency.
    pytest.param("integer_answer", layout(answer="-5"), None, 0.5, id="notebook-bug-integer-negative"),
    pytest.param("integer_answer", layout(answer="1,000"), None, 0.5, id="notebook-bug-integer-thousands-separator"),
    pytest.param("integer_answer", layout(answer="$18"), None, 0.5, id="notebook-bug-integer-dollar-sign"),
    # The notebook compared strings, so equal numbers written differently scored 0.
    pytest.param(
        "correctness",
        layout(answer="1,000"),
        "#### 1000",
        2.0,
        id="notebook-bug-correctness-thousands-separator-equals-plain",
    ),
    pytest.param(
        "correctness",
        layout(answer="1000"),
        "#### 1,000",
        2.0,
        id="notebook-bug-correctness-plain-equals-gold-with-separator",
    ),
    pytest.param(
        "correctness", layout(answer="$18"), "#### 18", 2.0, id="notebook-bug-correctness-dollar-equals-plain"
    ),
    pytest.param(
        "correctness", layout(answer="18.0"), "#### 18", 2.0, id="notebook-bug-correctness-decimal-zero-equals-integer"
    ),
    # Comparing numbers must not drop the sign.
    pytest.param(
        "correctness", layout(answer="-3"), "#### 3", 0.0, id="notebook-bug-correctness-negative-is-not-positive"
    ),
]


@pytest.mark.parametrize("name, completion, gold, expected", SEED_BUGS)
def test_notebook_bug_regressions(name, completion, gold, expected):
    assert score(name, completion, gold) == exactly(expected)


# ---------------------------------------------------------------------------------------------
# 2. Every reward on the same completions: one row per completion, one column per reward.
#    Gold is "#### 18" throughout.
# ---------------------------------------------------------------------------------------------

MATRIX = [
    pytest.param(
        PERFECT,
        dict(xmlcount=0.5, soft_format=0.5, strict_format=0.5, integer_answer=0.5, correctness=2.0),
        id="perfect-format",
    ),
    pytest.param(
        PERFECT + "\n",
        dict(xmlcount=0.5, soft_format=0.5, strict_format=0.5, integer_answer=0.5, correctness=2.0),
        id="perfect-format-trailing-newline",
    ),
    pytest.param(
        layout(answer="17"),
        dict(xmlcount=0.5, soft_format=0.5, strict_format=0.5, integer_answer=0.5, correctness=0.0),
        id="perfect-format-wrong-answer",
    ),
    pytest.param(
        "The answer is 18.",
        dict(xmlcount=0.0, soft_format=0.0, strict_format=0.0, integer_answer=0.0, correctness=0.0),
        id="no-tags-at-all",
    ),
    # Only "\n</answer>" earns (the answer tag is not preceded by "\n"); correctness needs no reasoning.
    pytest.param(
        "<answer>\n18\n</answer>",
        dict(xmlcount=0.125, soft_format=0.0, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="missing-reasoning-block",
    ),
    pytest.param(
        "<reasoning>\nHalf of 36 is 18.\n</reasoning>\n18",
        dict(xmlcount=0.25, soft_format=0.0, strict_format=0.0, integer_answer=0.0, correctness=0.0),
        id="missing-answer-block",
    ),
    pytest.param(
        "<reasoning>\nHalf of 36 is 18.\n<answer>\n18\n</answer>",
        dict(xmlcount=0.375, soft_format=0.0, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="missing-closing-reasoning-tag",
    ),
    # Both "\n<answer>\n" and "\n</answer>" appear twice, so neither answer tag earns; the last block is read.
    pytest.param(
        PERFECT + "\n<answer>\n17\n</answer>",
        dict(xmlcount=0.25, soft_format=0.5, strict_format=0.0, integer_answer=0.5, correctness=0.0),
        id="duplicated-answer-blocks-last-wrong",
    ),
    pytest.param(
        layout(answer="17") + "\n<answer>\n18\n</answer>",
        dict(xmlcount=0.25, soft_format=0.5, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="duplicated-answer-blocks-last-right",
    ),
    # Leading whitespace: soft allows it ("\s*"), strict is exactly the layout so it must start with <reasoning>.
    pytest.param(
        "\n" + PERFECT,
        dict(xmlcount=0.5, soft_format=0.5, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="leading-newline",
    ),
    pytest.param(
        "  \t" + PERFECT,
        dict(xmlcount=0.5, soft_format=0.5, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="leading-spaces-and-tab",
    ),
    pytest.param(
        "Sure! " + PERFECT,
        dict(xmlcount=0.5, soft_format=0.0, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="leading-preamble-text",
    ),
    # Text after </answer>: strict fails, soft is fine, xmlcount loses 0.001 per stripped character (8 here).
    pytest.param(
        PERFECT + "\nThe end.",
        dict(xmlcount=0.492, soft_format=0.5, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="text-after-answer",
    ),
    # Truncated by the token budget: no </answer>, so nothing can be read from the answer.
    pytest.param(
        "<reasoning>\nHalf of 36 is 18.\n</reasoning>\n<answer>\n18",
        dict(xmlcount=0.375, soft_format=0.0, strict_format=0.0, integer_answer=0.0, correctness=0.0),
        id="truncated-no-closing-answer-tag",
    ),
    pytest.param(
        "<reasoning>\nHalf of 36",
        dict(xmlcount=0.125, soft_format=0.0, strict_format=0.0, integer_answer=0.0, correctness=0.0),
        id="truncated-inside-reasoning",
    ),
    pytest.param(
        "",
        dict(xmlcount=0.0, soft_format=0.0, strict_format=0.0, integer_answer=0.0, correctness=0.0),
        id="empty-string",
    ),
    pytest.param(
        "<reasoning></reasoning><answer>18</answer>",
        dict(xmlcount=0.0, soft_format=0.5, strict_format=0.0, integer_answer=0.5, correctness=2.0),
        id="tags-without-newlines",
    ),
]


@pytest.mark.parametrize("name", REWARD_NAMES)
@pytest.mark.parametrize("completion, expected", MATRIX)
def test_reward_matrix(completion, expected, name):
    assert score(name, completion) == exactly(expected[name])


XMLCOUNT = [
    pytest.param(PERFECT, 0.5, id="perfect"),
    pytest.param(PERFECT + " \n\t\n", 0.5, id="trailing-whitespace-is-not-penalised"),
    pytest.param(PERFECT + "x", 0.499, id="one-char-after-answer"),
    pytest.param(PERFECT + "\n" + "x" * 100, 0.4, id="hundred-chars-after-answer"),
    pytest.param(PERFECT + "\n" + "x" * 250, 0.25, id="penalty-uses-up-answer-tags-exactly"),
    # The penalty is floored at what the answer tags earned: the reasoning tags' 0.25 is kept.
    pytest.param(PERFECT + "\n" + "x" * 5000, 0.25, id="penalty-floored-at-answer-tags-share"),
    pytest.param("<answer>\n18\n</answer>" + "x" * 5000, 0.0, id="penalty-floored-at-zero"),
    pytest.param(
        "<reasoning>\n<reasoning>\nr\n</reasoning>\n<answer>\n18\n</answer>",
        0.375,
        id="reasoning-tag-twice-earns-nothing-for-it",
    ),
    pytest.param("\n<answer>\n18\n</answer>", 0.25, id="answer-tags-only"),
    pytest.param("</answer>" + "x" * 10, 0.0, id="bare-closing-tag-never-negative"),
]


@pytest.mark.parametrize("completion, expected", XMLCOUNT)
def test_xmlcount(completion, expected):
    assert score("xmlcount", completion) == exactly(expected)


SOFT_FORMAT = [
    pytest.param(PERFECT, True, id="perfect"),
    pytest.param("<reasoning>r</reasoning> \n <answer>18</answer>", True, id="whitespace-between-blocks"),
    pytest.param("<reasoning>r</reasoning>junk<answer>18</answer>", False, id="text-between-blocks"),
    pytest.param("<answer>18</answer><reasoning>r</reasoning>", False, id="blocks-in-wrong-order"),
    pytest.param(PERFECT + "\nanything at all", True, id="text-after-answer"),
    pytest.param("<reasoning>\nr\n</reasoning>\n<answer>\n18", False, id="unclosed-answer"),
    pytest.param("\n\n" + PERFECT, True, id="leading-newlines"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("completion, expected", SOFT_FORMAT)
def test_has_soft_format(completion, expected):
    assert has_soft_format(completion) is expected


STRICT_FORMAT = [
    pytest.param(PERFECT, True, id="perfect"),
    pytest.param(PERFECT + "\n", True, id="trailing-newline"),
    pytest.param(PERFECT + " \n\t", True, id="trailing-whitespace"),
    pytest.param(layout("line one\n\nline three"), True, id="reasoning-with-blank-line"),
    pytest.param(layout(answer="18\napples"), True, id="multiline-answer"),
    pytest.param(layout(reasoning=""), False, id="empty-reasoning"),
    pytest.param(layout(answer=""), False, id="empty-answer"),
    pytest.param("\n" + PERFECT, False, id="leading-newline"),
    pytest.param(" " + PERFECT, False, id="leading-space"),
    pytest.param(PERFECT + "\nThe end.", False, id="text-after-answer"),
    pytest.param(PERFECT + "\n<answer>\n18\n</answer>", False, id="duplicated-answer-block"),
    pytest.param(layout("I think <reasoning> is hard"), False, id="tag-repeated-inside-reasoning"),
    pytest.param("<reasoning>\nr\n</reasoning>\n\n<answer>\n18\n</answer>", False, id="blank-line-between-blocks"),
    pytest.param("<reasoning>r</reasoning><answer>18</answer>", False, id="no-newlines-around-tags"),
    pytest.param("<reasoning>\nr\n</reasoning>\n<answer>\n18", False, id="truncated"),
    pytest.param("", False, id="empty"),
]


@pytest.mark.parametrize("completion, expected", STRICT_FORMAT)
def test_has_strict_format(completion, expected):
    assert has_strict_format(completion) is expected


INTEGER_ANSWER = [
    pytest.param("18", 0.5, id="plain"),
    pytest.param("-5", 0.5, id="negative"),
    pytest.param("1,000", 0.5, id="thousands"),
    pytest.param("-1,200.", 0.5, id="negative-thousands-full-stop"),
    pytest.param("$18", 0.5, id="dollar"),
    pytest.param("18.0", 0.5, id="integer-valued-decimal"),
    pytest.param("  18  ", 0.5, id="surrounding-whitespace"),
    pytest.param("18.5", 0.0, id="fraction"),
    pytest.param("1,00", 0.0, id="bad-thousands-group"),
    pytest.param("18 apples", 0.0, id="number-with-words"),
    pytest.param("12 + 6", 0.0, id="expression"),
    pytest.param("eighteen", 0.0, id="word"),
    pytest.param("", 0.0, id="empty-answer"),
]


@pytest.mark.parametrize("answer, expected", INTEGER_ANSWER)
def test_integer_answer(answer, expected):
    assert score("integer_answer", layout(answer=answer)) == exactly(expected)


CORRECTNESS = [
    pytest.param("18", "#### 18", 2.0, id="plain"),
    pytest.param("18", "18", 2.0, id="bare-gold-as-train-grpo-passes-it"),
    pytest.param("The answer is $18.", "#### 18", 2.0, id="last-number-of-a-sentence"),
    pytest.param("12 + 6 = 18", "#### 18", 2.0, id="last-number-of-an-equation"),
    pytest.param("18 apples, not 17", "#### 18", 0.0, id="last-number-is-read-not-first"),
    pytest.param("3.5", "#### 3.5", 2.0, id="decimal"),
    pytest.param("-7", "#### -7", 2.0, id="negative"),
    pytest.param("7", "#### -7", 0.0, id="positive-is-not-negative"),
    # The answer 1 written after a parenthesised expression: read as -1 it would score 0.
    pytest.param("(2 + 3)-1", "#### 1", 2.0, id="hyphen-after-a-parenthesis-is-not-a-sign"),
    pytest.param("1,234", "Natalia sold 48 + 24 = 72 clips.\n#### 1,234", 2.0, id="full-gsm8k-answer"),
    pytest.param("17", "#### 18", 0.0, id="wrong"),
    pytest.param("eighteen", "#### 18", 0.0, id="no-number"),
    pytest.param("18", "no gold number here", 0.0, id="no-gold"),
    pytest.param("18", None, 0.0, id="gold-none"),
    pytest.param("", "#### 18", 0.0, id="empty-answer"),
    # "1,0000" is not a number with thousands groups of three; the answer must not read as 1000.
    pytest.param(
        "1,0000",
        "#### 1000",
        0.0,
        # Regression: a group of four digits after a comma once read as "1,000".
        id="malformed-thousands-group-is-not-1000",
    ),
]


@pytest.mark.parametrize("answer, gold, expected", CORRECTNESS)
def test_correctness(answer, gold, expected):
    assert score("correctness", layout(answer=answer), gold) == exactly(expected)


# ---------------------------------------------------------------------------------------------
# 3. Parsing helpers.
# ---------------------------------------------------------------------------------------------

PARSE_NUMBER = [
    pytest.param("42", Decimal(42), id="plain"),
    pytest.param("$1,000.", Decimal(1000), id="dollar-thousands-full-stop"),
    pytest.param("-3", Decimal(-3), id="negative"),
    pytest.param("-$5", Decimal(-5), id="sign-before-dollar"),
    pytest.param("(-3)", Decimal(-3), id="negative-in-parentheses"),
    pytest.param("5-3", Decimal(3), id="hyphen-inside-is-not-a-sign"),
    # A closing parenthesis ends an expression like a digit does: the hyphen after it is a minus, not a sign.
    pytest.param("(2 + 3)-1", Decimal(1), id="hyphen-after-a-parenthesis-is-not-a-sign"),
    pytest.param("3.5", Decimal("3.5"), id="decimal"),
    pytest.param(".5", Decimal("0.5"), id="leading-point"),
    pytest.param("12,345,678", Decimal(12345678), id="several-thousands-groups"),
    pytest.param("first 3 then 7", Decimal(7), id="last-number-wins"),
    pytest.param("x2", None, id="digit-glued-to-a-word"),
    pytest.param("no digits", None, id="no-number"),
    pytest.param("", None, id="empty"),
    pytest.param(None, None, id="none"),
]


@pytest.mark.parametrize("text, expected", PARSE_NUMBER)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


PARSE_INTEGER = [
    pytest.param("18", Decimal(18), id="plain"),
    pytest.param("-5", Decimal(-5), id="negative"),
    pytest.param("1,000", Decimal(1000), id="thousands"),
    pytest.param("-1,200.", Decimal(-1200), id="negative-thousands-full-stop"),
    pytest.param("$18", Decimal(18), id="dollar"),
    pytest.param("18.0", Decimal(18), id="integer-valued-decimal"),
    pytest.param(" 18 ", Decimal(18), id="surrounding-whitespace"),
    pytest.param("18.5", None, id="fraction"),
    pytest.param("18..", None, id="two-full-stops"),
    pytest.param("1,00", None, id="bad-thousands-group"),
    pytest.param("18 apples", None, id="trailing-words"),
    pytest.param("3 4", None, id="two-numbers"),
    pytest.param("", None, id="empty"),
    pytest.param(None, None, id="none"),
]


@pytest.mark.parametrize("text, expected", PARSE_INTEGER)
def test_parse_integer(text, expected):
    assert parse_integer(text) == expected


PARSE_GOLD = [
    pytest.param("She has 1,000 + 234 = 1,234 apples.\n#### 1,234", Decimal(1234), id="gsm8k-thousands"),
    pytest.param("#### -7", Decimal(-7), id="negative"),
    pytest.param("#### 3.5", Decimal("3.5"), id="decimal"),
    pytest.param("#### 72", Decimal(72), id="plain"),
    pytest.param("a #### 5 b #### 9", Decimal(9), id="last-marker-wins"),
    pytest.param("72", Decimal(72), id="bare-number"),
    pytest.param(" -7 ", Decimal(-7), id="bare-negative-with-spaces"),
    pytest.param("She has 72 apples.", None, id="no-marker-not-a-bare-number"),
    pytest.param("#### ", None, id="marker-without-number"),
    pytest.param("", None, id="empty"),
    pytest.param(None, None, id="none"),
]


@pytest.mark.parametrize("answer, expected", PARSE_GOLD)
def test_parse_gold(answer, expected):
    assert parse_gold(answer) == expected


EXTRACT_ANSWER = [
    pytest.param(PERFECT, "18", id="perfect-stripped"),
    pytest.param("<answer>1</answer> then <answer> 2 </answer>", "2", id="last-complete-block-wins"),
    pytest.param("<answer>1</answer> then <answer>2", "1", id="unclosed-last-block-is-ignored"),
    pytest.param("<answer>\n18", None, id="unclosed-only-block"),
    pytest.param("<answer>\nline one\nline two\n</answer>", "line one\nline two", id="multiline-block"),
    pytest.param("<answer></answer>", "", id="empty-block"),
    pytest.param("no tags", None, id="no-block"),
    pytest.param("", None, id="empty"),
]


@pytest.mark.parametrize("text, expected", EXTRACT_ANSWER)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


SAME_NUMBER = [
    pytest.param(Decimal("18.0"), Decimal(18), True, id="trailing-zero-decimal-equals-integer"),
    pytest.param(Decimal(1000), Decimal("1000"), True, id="equal"),
    pytest.param(Decimal(-3), Decimal(3), False, id="sign-matters"),
    pytest.param(Decimal("0.5"), Decimal("0.50"), True, id="decimals-different-exponent"),
    pytest.param(None, Decimal(3), False, id="none-left"),
    pytest.param(Decimal(3), None, False, id="none-right"),
    pytest.param(None, None, False, id="none-never-equals-none"),
]


@pytest.mark.parametrize("a, b, expected", SAME_NUMBER)
def test_same_number(a, b, expected):
    assert same_number(a, b) is expected


COMPLETION_TEXT = [
    pytest.param("plain text", "plain text", id="string"),
    pytest.param([{"role": "assistant", "content": "chat text"}], "chat text", id="conversational"),
    pytest.param(
        [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}],
        "ab",
        id="several-messages-joined",
    ),
    pytest.param({"role": "assistant", "content": "one message"}, "one message", id="single-message-dict"),
    pytest.param([{"role": "assistant"}], "", id="message-without-content"),
    pytest.param([], "", id="empty-list"),
    pytest.param(None, "", id="none"),
]


@pytest.mark.parametrize("completion, expected", COMPLETION_TEXT)
def test_completion_text(completion, expected):
    assert completion_text(completion) == expected


# ---------------------------------------------------------------------------------------------
# 4. Contract with TRL.
# ---------------------------------------------------------------------------------------------

CONTRACT_COMPLETIONS = [PERFECT, "", PERFECT + "\nThe end.", "<answer>\n-5\n</answer>", "<reasoning>\nr"]
CONTRACT_GOLDS = ["#### 18", "#### 18", "18", "#### -5", None]
TRL_KWARGS = dict(
    completion_ids=[[1, 2, 3]] * len(CONTRACT_COMPLETIONS),
    trainer_state=object(),
    log_extra=lambda *a, **k: None,
    log_metric=lambda *a, **k: None,
    question=["How many?"] * len(CONTRACT_COMPLETIONS),
)


def as_chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_contract_list_of_floats_one_per_completion_with_trl_kwargs(name):
    result = REWARDS[name](
        prompts=["Q"] * len(CONTRACT_COMPLETIONS), completions=CONTRACT_COMPLETIONS, answer=CONTRACT_GOLDS, **TRL_KWARGS
    )
    assert isinstance(result, list)
    assert len(result) == len(CONTRACT_COMPLETIONS)
    assert all(type(value) is float for value in result)


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_contract_conversational_equals_plain_text(name):
    prompts = [[{"role": "user", "content": "Q"}]] * len(CONTRACT_COMPLETIONS)
    plain = REWARDS[name](prompts, CONTRACT_COMPLETIONS, answer=CONTRACT_GOLDS, **TRL_KWARGS)
    chat = REWARDS[name](prompts, [as_chat(c) for c in CONTRACT_COMPLETIONS], answer=CONTRACT_GOLDS, **TRL_KWARGS)
    assert chat == plain


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_contract_function_name_is_registry_key(name):
    assert REWARDS[name].__name__ == name


def test_registry_names_the_five_rewards_and_their_maxima():
    assert list(REWARDS) == ["xmlcount", "soft_format", "strict_format", "integer_answer", "correctness"]
    assert set(MAX_REWARD) == set(REWARDS)
    assert sum(MAX_REWARD.values()) == 4.0  # the module docstring's best total, the notebook's scale


@pytest.mark.parametrize("name", REWARD_NAMES)
def test_perfect_completion_reaches_each_maximum(name):
    assert score(name, PERFECT) == MAX_REWARD[name]


# ---------------------------------------------------------------------------------------------
# 5. Properties: any text, including soups of the format's own tags and number characters.
# ---------------------------------------------------------------------------------------------

PIECES = st.sampled_from([*TAGS, "\n", " ", ",", "$", "-", ".", "####", "\t", *"0123456789", "1,000", "18", "x"])
TAG_SOUP = st.lists(PIECES | st.text(max_size=3), max_size=40).map("".join)
ANY_TEXT = st.text() | TAG_SOUP
PROPERTY = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize("name", REWARD_NAMES)
@PROPERTY
@given(text=ANY_TEXT, gold=ANY_TEXT | st.none())
def test_property_reward_in_range_for_any_text(name, text, gold):
    [value] = REWARDS[name](["Q"], [text], answer=[gold])
    assert type(value) is float
    assert 0.0 <= value <= MAX_REWARD[name]


@pytest.mark.parametrize("name", REWARD_NAMES)
@PROPERTY
@given(text=ANY_TEXT, gold=ANY_TEXT | st.none())
def test_property_conversational_equals_plain_for_any_text(name, text, gold):
    assert REWARDS[name](["Q"], [as_chat(text)], answer=[gold]) == REWARDS[name](["Q"], [text], answer=[gold])


@pytest.mark.parametrize("parse", [parse_number, parse_integer, parse_gold], ids=lambda f: f.__name__)
@PROPERTY
@given(text=ANY_TEXT)
def test_property_parsers_never_raise(parse, text):
    assert parse(text) is None or isinstance(parse(text), Decimal)


@PROPERTY
@given(text=ANY_TEXT)
def test_property_parse_integer_is_integral_and_agrees_with_parse_number(text):
    value = parse_integer(text)
    if value is not None:
        assert value == value.to_integral_value()
        assert same_number(value, parse_number(text))


@PROPERTY
@given(text=ANY_TEXT)
def test_property_gold_survives_train_grpo_round_trip(text):
    # train_grpo stores the gold as f"{parse_gold(answer):f}" and correctness parses it again.
    gold = parse_gold(text)
    if gold is not None:
        assert parse_gold(f"{gold:f}") == gold


NO_TAG_TEXT = st.text(min_size=1).filter(lambda s: not any(tag in s for tag in TAGS))
WHITESPACE = st.text(st.characters().filter(str.isspace), max_size=5)


@PROPERTY
@given(reasoning=NO_TAG_TEXT, answer=NO_TAG_TEXT, after=WHITESPACE)
def test_property_prompt_layout_earns_every_format_reward(reasoning, answer, after):
    completion = layout(reasoning, answer, after=after)
    assert has_strict_format(completion)
    assert has_soft_format(completion)
    assert xml_count(completion) == 0.5


@PROPERTY
@given(n=st.integers(min_value=-(10**12), max_value=10**12), reasoning=NO_TAG_TEXT)
def test_property_any_integer_answer_is_an_integer_and_correct(n, reasoning):
    completion = layout(reasoning, f"{n:,}")
    assert score("integer_answer", completion) == 0.5
    assert score("correctness", completion, f"#### {n}") == 2.0


# ---------------------------------------------------------------------------------------------
# 6. The system prompt asks for exactly the layout strict_format accepts.
# ---------------------------------------------------------------------------------------------


def test_system_prompt_layout_passes_strict_format():
    asked = SYSTEM_PROMPT.split("Respond in the following format:\n", 1)[1]
    filled = asked.replace("...", "Half of 36 is 18.", 1).replace("...", "18", 1)
    assert "..." not in filled
    assert has_strict_format(filled)
    assert score("xmlcount", filled) == 0.5


def test_system_prompt_names_each_tag_once():
    assert [SYSTEM_PROMPT.count(tag) for tag in TAGS] == [1, 1, 1, 1]
