"""GSM8K-style word problems, generated: ``{"question", "answer"}`` rows with a ``#### N`` gold line.

Stand-ins for the hub's GSM8K where it cannot be reached; each template writes its reasoning lines
the way GSM8K does, so the answers parse with rewards.parse_gold like the real ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from pathlib import Path

import rewards
from recipe.jsonl import write_jsonl

NAMES = [
    "Tom",
    "Mia",
    "Liam",
    "Ava",
    "Noah",
    "Emma",
    "Omar",
    "Sofia",
    "Raj",
    "Chloe",
    "Ben",
    "Lucy",
    "Diego",
    "Hana",
    "Kofi",
    "Nora",
    "Sam",
    "Zara",
    "Jack",
    "Ivy",
]
OBJECTS = [
    "apples",
    "marbles",
    "stickers",
    "pencils",
    "cookies",
    "books",
    "shells",
    "cards",
    "eggs",
    "balloons",
    "crayons",
    "stamps",
]
ITEMS = ["notebook", "sandwich", "ticket", "toy car", "plant", "scarf", "mug", "puzzle"]
PRODUCTS = ["bottles", "bricks", "chairs", "shirts", "cans", "bolts"]

Problem = tuple[str, list[str], int]


def _two_names(rng: random.Random) -> tuple[str, str]:
    first, second = rng.sample(NAMES, 2)
    return first, second


def _add(rng: random.Random) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    question = f"{name} has {a} {obj} and buys {b} more. How many {obj} does {name} have now?"
    return question, [f"{name} has {a} + {b} = {a + b} {obj}."], a + b


def _subtract(rng: random.Random) -> Problem:
    (name, friend), obj = _two_names(rng), rng.choice(OBJECTS)
    a = rng.randint(10, 90)
    b = rng.randint(1, a - 1)
    question = f"{name} had {a} {obj} and gave {b} of them to {friend}. How many {obj} does {name} have left?"
    return question, [f"{name} has {a} - {b} = {a - b} {obj} left."], a - b


def _multiply(rng: random.Random) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    boxes, per_box = rng.randint(2, 12), rng.randint(2, 15)
    question = f"{name} buys {boxes} boxes of {obj}. Each box holds {per_box} {obj}. How many {obj} does {name} buy?"
    return question, [f"{name} buys {boxes} * {per_box} = {boxes * per_box} {obj}."], boxes * per_box


def _divide(rng: random.Random) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    friends, each = rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    question = f"{name} shares {total} {obj} equally among {friends} friends. How many {obj} does each friend get?"
    return question, [f"Each friend gets {total} / {friends} = {each} {obj}."], each


def _money_spent(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    count, price = rng.randint(2, 9), rng.randint(2, 25)
    question = f"{name} buys {count} {item}s for ${price} each. How much money does {name} spend?"
    return question, [f"{name} spends {count} * {price} = ${count * price}."], count * price


def _money_left(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    count, price = rng.randint(2, 6), rng.randint(3, 15)
    cost = count * price
    budget = cost + rng.randint(1, 50)
    question = (
        f"{name} has ${budget} and buys {count} {item}s that cost ${price} each. How much money does {name} have left?"
    )
    lines = [
        f"The {item}s cost {count} * {price} = ${cost}.",
        f"{name} has {budget} - {cost} = ${budget - cost} left.",
    ]
    return question, lines, budget - cost


def _twice_as_many(rng: random.Random) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    monday = rng.randint(3, 40)
    tuesday = 2 * monday
    question = (
        f"{name} collects {monday} {obj} on Monday and twice as many on Tuesday. "
        f"How many {obj} does {name} collect in total?"
    )
    lines = [
        f"On Tuesday {name} collects 2 * {monday} = {tuesday} {obj}.",
        f"In total {monday} + {tuesday} = {monday + tuesday} {obj}.",
    ]
    return question, lines, monday + tuesday


def _half_then_more(rng: random.Random) -> Problem:
    (name, friend), obj = _two_names(rng), rng.choice(OBJECTS)
    half, more = rng.randint(3, 40), rng.randint(2, 30)
    question = (
        f"{name} has {2 * half} {obj} and gives half of them to {friend}. "
        f"Then {name} finds {more} more. How many {obj} does {name} have now?"
    )
    lines = [
        f"{name} keeps {2 * half} / 2 = {half} {obj}.",
        f"Then {name} has {half} + {more} = {half + more} {obj}.",
    ]
    return question, lines, half + more


def _library(rng: random.Random) -> Problem:
    start, bought, removed = rng.randint(1000, 9000), rng.randint(100, 2500), rng.randint(100, 900)
    question = (
        f"A library has {start:,} books. It buys {bought:,} new books and gives away {removed} old ones. "
        f"How many books does the library have now?"
    )
    lines = [
        f"After buying it has {start} + {bought} = {start + bought} books.",
        f"Then {start + bought} - {removed} = {start + bought - removed} books.",
    ]
    return question, lines, start + bought - removed


def _factory(rng: random.Random) -> Problem:
    product = rng.choice(PRODUCTS)
    per_day, weeks = rng.randint(20, 300), rng.randint(1, 6)
    days = 7 * weeks
    question = f"A factory makes {per_day} {product} every day. How many {product} does it make in {weeks} weeks?"
    lines = [
        f"{weeks} weeks is {weeks} * 7 = {days} days.",
        f"It makes {per_day} * {days} = {per_day * days} {product}.",
    ]
    return question, lines, per_day * days


def _wages(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    rate, hours, weeks = rng.randint(10, 40), rng.randint(10, 40), rng.randint(2, 8)
    weekly = rate * hours
    question = (
        f"{name} earns ${rate} an hour and works {hours} hours a week. How much does {name} earn in {weeks} weeks?"
    )
    lines = [
        f"Each week {name} earns {rate} * {hours} = ${weekly}.",
        f"In {weeks} weeks that is {weekly} * {weeks} = ${weekly * weeks}.",
    ]
    return question, lines, weekly * weeks


def _installments(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    payment, months, down = rng.randint(100, 900), rng.randint(2, 12), rng.randint(1000, 5000)
    rest = payment * months
    price = down + rest
    question = (
        f"A car costs ${price:,}. {name} pays ${down:,} up front and the rest in {months} equal monthly payments. "
        f"How much is each payment?"
    )
    lines = [
        f"The rest is {price} - {down} = ${rest}.",
        f"Each payment is {rest} / {months} = ${payment}.",
    ]
    return question, lines, payment


def _reading(rng: random.Random) -> Problem:
    name = rng.choice(NAMES)
    per_day, days = rng.randint(5, 40), rng.randint(2, 20)
    pages = per_day * days
    question = f"{name} reads {per_day} pages a day. How many days does it take {name} to read a {pages}-page book?"
    return question, [f"It takes {pages} / {per_day} = {days} days."], days


TEMPLATES: list[Callable[[random.Random], Problem]] = [
    _add,
    _subtract,
    _multiply,
    _divide,
    _money_spent,
    _money_left,
    _twice_as_many,
    _half_then_more,
    _library,
    _factory,
    _wages,
    _installments,
    _reading,
]


def gsm8k_answer(lines: list[str], value: int) -> str:
    return "\n".join(lines) + f"\n#### {value}"


def make_problems(n: int, seed: int, exclude: Collection[str] = ()) -> list[dict]:
    """Deterministic GSM8K-style rows; questions are unique and not in `exclude`."""
    rng = random.Random(seed)
    seen = set(exclude)
    rows: list[dict] = []
    while len(rows) < n:
        question, lines, value = rng.choice(TEMPLATES)(rng)
        if question in seen:
            continue
        seen.add(question)
        rows.append({"question": question, "answer": gsm8k_answer(lines, value)})
    return rows


def write_splits(data_dir: Path, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """train.jsonl (seed 0) and test.jsonl (seed 1, no question shared with train)."""
    train = make_problems(n_train, seed=0)
    test = make_problems(n_test, seed=1, exclude={row["question"] for row in train})
    write_jsonl(train, data_dir / "train.jsonl")
    write_jsonl(test, data_dir / "test.jsonl")
    return train, test


def tagged_reply(row: dict) -> str:
    """The row's reasoning and gold number in the recipe's tag format, as the system prompt asks."""
    reasoning, gold = rewards.split_gsm8k(row["answer"])
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{gold}\n</answer>\n"
