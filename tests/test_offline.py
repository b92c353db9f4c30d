"""Offline assets: synthetic GSM8K rows, the Qwen2-style tokenizer and the tiny model.

/tmp/venv/bin/python -m pytest tests/test_offline.py -q
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import offline
import rewards
from recipe.data import chat_prompt
from recipe.jsonl import write_jsonl
from recipe.smollm2 import format_rate, prime_format
from recipe.synthetic import TEMPLATES, gsm8k_answer, make_problems
from recipe.tiny import SPECIAL_TOKENS, build_tokenizer, conversations, render_chat, torch_threads

EQUATION_RE = re.compile(r"(\d+) ([-+*/]) (\d+) = \$?(\d+)")
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def gold_of(answer: str) -> int:
    return int(answer.rsplit("####", 1)[1].strip())


def test_make_problems_is_deterministic_per_seed() -> None:
    assert make_problems(50, seed=0) == make_problems(50, seed=0)
    assert make_problems(50, seed=0) != make_problems(50, seed=1)


def test_make_problems_questions_are_unique_and_respect_exclude() -> None:
    train = make_problems(400, seed=0)
    questions = {row["question"] for row in train}
    test = make_problems(100, seed=1, exclude=questions)
    assert len(questions) == 400
    assert len(test) == 100 and not questions & {row["question"] for row in test}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.__name__.lstrip("_"))
def test_every_equation_holds_and_the_last_one_is_the_gold(template) -> None:
    rng = random.Random(0)
    for _ in range(50):
        question, lines, value = template(rng)
        answer = gsm8k_answer(lines, value)
        equations = EQUATION_RE.findall(answer)
        assert equations, answer
        for a, op, b, result in equations:
            assert OPERATIONS[op](int(a), int(b)) == int(result), answer
        assert int(equations[-1][3]) == gold_of(answer) == value >= 0
        # The recipe parses golds with rewards.parse_gold; it must read the same number.
        assert rewards.parse_gold(answer) == value


def test_problems_include_large_numbers_written_with_commas() -> None:
    rows = make_problems(400, seed=0)
    assert any(re.search(r"\d,\d{3}", row["question"]) for row in rows)
    assert any(gold_of(row["answer"]) >= 1000 for row in rows)
    assert all(row["answer"].splitlines()[-1] == f"#### {gold_of(row['answer'])}" for row in rows)


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    import json

    rows = make_problems(3, seed=0)
    write_jsonl(rows, tmp_path / "sub" / "rows.jsonl")
    lines = (tmp_path / "sub" / "rows.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows


@pytest.fixture(scope="session")
def tokenizers_pair(tmp_path_factory):
    """(raw trained tokenizer, what AutoTokenizer loads from its folder)."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    pairs = conversations(make_problems(200, seed=0), seed=0)
    raw = build_tokenizer([prompt + reply for prompt, reply in pairs], out)
    return raw, AutoTokenizer.from_pretrained(str(out))


TOKENIZER_TEXTS = {
    "system_prompt": rewards.SYSTEM_PROMPT,
    "thousands": "A car costs $1,234. Tom pays $12,500.50 up front.",
    "gold_line": "3 + 4 = 7\n#### 1234",
    "tags": "<reasoning>\nIt is 7.\n</reasoning>\n<answer>\n7\n</answer>\n",
    "chatml": "<|im_start|>user\nHow many?<|im_end|>\n<|im_start|>assistant\n",
    "blank_lines": "a\n\n\nb \n  c\r\n",
    "unseen_unicode": "Zoë paid €5 — naïve ✓ 日本語",
    "contraction": "Tom's cat can't; THEY'RE here",
}


@pytest.mark.parametrize("text", TOKENIZER_TEXTS.values(), ids=TOKENIZER_TEXTS.keys())
def test_autotokenizer_matches_raw_and_round_trips(tokenizers_pair, text: str) -> None:
    raw, hf = tokenizers_pair
    ids = raw.encode(text).ids
    assert hf.encode(text, add_special_tokens=False) == ids
    assert hf.encode(text) == ids  # no BOS/EOS added, like Qwen2.5
    assert hf.decode(ids) == text


def test_tokenizer_loads_as_qwen2_with_chatml_specials(tokenizers_pair) -> None:
    _, hf = tokenizers_pair
    assert type(hf).__name__ == "Qwen2Tokenizer"
    assert (hf.eos_token, hf.pad_token) == ("<|endoftext|>", "<|endoftext|>")
    assert hf.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2]
    assert hf.encode("<|im_start|><|im_end|>") == [1, 2]
    assert 500 <= len(hf) <= 2000


CHAT_CASES = {
    "conversation": (
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
        False,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n",
    ),
    "generation_prompt": (
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        True,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n",
    ),
}


@pytest.mark.parametrize(("messages", "add_generation_prompt", "expected"), CHAT_CASES.values(), ids=CHAT_CASES.keys())
def test_chat_template_renders_chatml(tokenizers_pair, messages, add_generation_prompt: bool, expected: str) -> None:
    _, hf = tokenizers_pair
    rendered = hf.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
    assert rendered == expected
    assert render_chat(messages, add_generation_prompt) == expected


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_assets: Path) -> Path:
    return tiny_assets / "model"


def test_tiny_model_folder_loads_with_auto_classes(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.tie_word_embeddings
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert model.generation_config.eos_token_id == [im_end, endoftext]
    assert model.generation_config.pad_token_id == endoftext
    assert (tiny_model_dir / "model.safetensors").exists()


def test_tiny_model_sometimes_answers_in_the_tag_format(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir), padding_side="left")
    questions = [row["question"] for row in make_problems(16, seed=1)]
    prompts = [
        tokenizer.apply_chat_template(chat_prompt(q), add_generation_prompt=True, tokenize=False) for q in questions
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    with torch_threads(1):
        output = model.generate(**batch, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=128)
    completions = output[:, batch["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
    assert all(text.strip() for text in texts)
    ended = sum(tokenizer.convert_tokens_to_ids("<|im_end|>") in ids for ids in completions.tolist())
    strict = sum(rewards.has_strict_format(text) for text in texts)
    # GRPO needs reward variance: the format should appear often, but not every time.
    assert ended >= 8
    assert 1 <= strict < len(texts)


def test_torch_threads_restores_the_previous_count() -> None:
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("command", ["tiny", "smollm2"])
def test_cli_skips_existing_outputs(tmp_path: Path, capsys, command: str) -> None:
    for path in offline.tiny_outputs(tmp_path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    offline.main([command, "--out", str(tmp_path)])
    assert "already built" in capsys.readouterr().out


def test_cli_requires_a_subcommand() -> None:
    with pytest.raises(SystemExit):
        offline.main([])


def a_file(tmp: Path, name: str = "f") -> Path:
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_text("kept\n")
    return tmp / name


def a_folder(tmp: Path, name: str) -> Path:
    (tmp / name).mkdir(parents=True)
    return tmp / name


# (id, offline.py words given a tmp folder, fragment of the one-line error with {t} for the folder). Regressions:
# each was a traceback (NotADirectoryError, "Sample larger than population", ZeroDivisionError), some after
# writing half a build, or wrote something else than asked (gsm-symbolic --limit 0 wrote 200 rows).
BAD_ARGS = [
    ("tiny-out-is-a-file", lambda t: ["tiny", "--out", str(a_file(t))], "--out {t}/f is a file: pass --out a folder"),
    (
        "tiny-out-inside-a-file",
        lambda t: ["tiny", "--out", str(a_file(t) / "tiny")],
        "--out {t}/f/tiny: {t}/f is a file, so the folder cannot be created",
    ),
    (
        "tiny-data-is-a-file",
        lambda t: ["tiny", "--out", str(a_file(t, "tiny/data").parent)],
        "--out {t}/tiny: {t}/tiny/data is a file in the way of {t}/tiny/data/train.jsonl",
    ),
    (
        "tiny-no-problems",
        lambda t: ["tiny", "--out", str(t / "tiny"), "--train", "0", "--test", "0"],
        "--train 0: pass --train 16 or more",
    ),
    (
        "tiny-too-few-train",
        lambda t: ["tiny", "--out", str(t / "tiny"), "--train", "15"],
        "--train 15: pass --train 16",
    ),
    ("tiny-no-test", lambda t: ["tiny", "--out", str(t / "tiny"), "--test", "0"], "--test 0: pass --test 1 or more"),
    ("tiny-negative-test", lambda t: ["tiny", "--out", str(t / "tiny"), "--test", "-3"], "--test -3: pass --test 1"),
    ("smollm2-out-is-a-file", lambda t: ["smollm2", "--out", str(a_file(t))], "--out {t}/f is a file"),
    ("smollm2-no-train", lambda t: ["smollm2", "--out", str(t / "s"), "--train", "0"], "--train 0: pass --train 1"),
    ("smollm2-no-test", lambda t: ["smollm2", "--out", str(t / "s"), "--test", "0"], "--test 0: pass --test 1 or more"),
    (
        "smollm2-negative-prime-steps",
        lambda t: ["smollm2", "--out", str(t / "s"), "--prime-steps", "-1"],
        "--prime-steps -1: pass --prime-steps 0 or more (0: no priming)",
    ),
    (
        "smollm2-too-few-prime-examples",
        lambda t: ["smollm2", "--out", str(t / "s"), "--prime-steps", "5", "--prime-examples", "4"],
        "--prime-examples 4: pass --prime-examples 16 or more",
    ),
    ("gsm-symbolic-out-is-a-file", lambda t: ["gsm-symbolic", "--out", str(a_file(t))], "--out {t}/f is a file"),
    (
        "gsm-symbolic-test-is-a-folder",
        lambda t: ["gsm-symbolic", "--out", str(a_folder(t, "g/test.jsonl").parent), "--limit", "1"],
        "--out {t}/g: {t}/g/test.jsonl is a folder in the way",
    ),
    (
        "gsm-symbolic-zero-limit",
        lambda t: ["gsm-symbolic", "--out", str(t / "g"), "--limit", "0"],
        "--limit 0: pass --limit 1 or more",
    ),
]


@pytest.mark.parametrize("words, message", [pytest.param(w, m, id=i) for i, w, m in BAD_ARGS])
def test_bad_arguments_are_one_line_and_write_nothing(tmp_path: Path, capsys, words, message: str) -> None:
    args = words(tmp_path)
    before = {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")}
    assert offline.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(t=tmp_path) in err, err
    assert {p: p.read_bytes() if p.is_file() else None for p in tmp_path.rglob("*")} == before


def test_format_priming_updates_the_saved_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    before = load_file(str(model_dir / "model.safetensors"))
    losses = prime_format(model_dir, make_problems(20, seed=2), steps=2, seed=2, lr=1e-3)
    after = load_file(str(model_dir / "model.safetensors"))
    assert len(losses) == 2
    assert any(not before[name].to(after[name].dtype).equal(after[name]) for name in after)


def test_format_rate_reports_shares(tiny_model_dir: Path) -> None:
    rate = format_rate(tiny_model_dir, make_problems(4, seed=1), samples=4, max_new_tokens=24)
    assert set(rate) == {"soft", "strict", "correct"}
    assert all(0.0 <= v <= 1.0 for v in rate.values())
