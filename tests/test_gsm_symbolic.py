"""GSM-Symbolic as an evaluation set: rows from reasoning-gym's examples, a missing package refused, a real run."""

import importlib.util
import json

import pytest

import eval_grpo
import rewards
from recipe import gsm_symbolic
from recipe.config import DataConfig
from recipe.data import build_prompts, load_rows, load_tokenizer
from recipe.errors import RecipeError

ROOT = eval_grpo.Path(eval_grpo.__file__).parent
QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


@pytest.mark.parametrize(
    "example, row",
    [
        (
            {"question": QUESTION + gsm_symbolic.SUFFIX, "answer": "7", "metadata": {}},
            {"question": QUESTION, "answer": "7"},
        ),
        ({"question": QUESTION, "answer": 7}, {"question": QUESTION, "answer": "7"}),
        ({"question": QUESTION + gsm_symbolic.SUFFIX, "answer": "-2.5"}, {"question": QUESTION, "answer": "-2.5"}),
    ],
    ids=["suffix-stripped", "int-answer", "negative-decimal"],
)
def test_example_becomes_a_row_whose_gold_parses(example, row):
    assert gsm_symbolic.to_row(example) == row
    assert rewards.parse_gold(row["answer"]) is not None


def fake_examples(seed: int, n: int) -> list[dict]:
    table = [
        {"question": "What is 3 + 4?" + gsm_symbolic.SUFFIX, "answer": "7"},
        {"question": "What is 10 - 12?" + gsm_symbolic.SUFFIX, "answer": "-2"},
        {"question": "Name a colour." + gsm_symbolic.SUFFIX, "answer": "blue"},  # no gold number: dropped
    ]
    return table[:n]


def test_rows_use_the_config_columns_and_build_prompts(tiny_assets):
    rows = gsm_symbolic.load(3, "problem", "solution", make=fake_examples)
    assert rows.column_names == ["problem", "solution"]
    data = DataConfig(dataset=gsm_symbolic.NAME, question_field="problem", answer_field="solution", limit=3)
    prompts, stats = build_prompts(rows, load_tokenizer(str(tiny_assets / "model")), data)
    assert prompts["question"] == ["What is 3 + 4?", "What is 10 - 12?"]
    assert [rewards.parse_gold(a) for a in prompts["answer"]] == [7, -2]
    assert stats["dropped_no_gold"] == 1


@pytest.mark.parametrize("limit, size", [(None, gsm_symbolic.DEFAULT_SIZE), (5, 5)], ids=["default", "limit"])
def test_size_follows_limit(limit, size):
    asked = []
    gsm_symbolic.load(limit, "question", "answer", make=lambda seed, n: asked.append((seed, n)) or [])
    assert asked == [(gsm_symbolic.SEED, size)]


def test_missing_reasoning_gym_is_one_line_before_the_model_loads(tiny_assets, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "reasoning_gym" else real(name, *a)
    )
    monkeypatch.setattr(eval_grpo, "load_hf", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(
        RecipeError, match=r"^data.dataset=gsm-symbolic needs the reasoning-gym package: pip install reasoning-gym$"
    ):
        load_rows(DataConfig(dataset=gsm_symbolic.NAME))
    assert eval_grpo.main(base_only_args(tiny_assets, "--limit", "2")) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: data.dataset=gsm-symbolic needs the reasoning-gym package: pip install reasoning-gym"
    ]


def base_only_args(tiny_assets, *extra: str) -> list[str]:
    return [
        "--config",
        str(ROOT / "configs" / "tiny-cpu.yaml"),
        "--set",
        f"model.name={tiny_assets / 'model'}",
        "--base-only",
        "--dataset",
        gsm_symbolic.NAME,
        "--max-new-tokens",
        "16",
        *extra,
    ]


needs_reasoning_gym = pytest.mark.skipif(
    importlib.util.find_spec("reasoning_gym") is None, reason="pip install reasoning-gym"
)


@needs_reasoning_gym
def test_the_same_seed_gives_the_same_questions_and_a_shorter_limit_a_prefix():
    five = load_rows(DataConfig(dataset=gsm_symbolic.NAME, limit=5))
    three = load_rows(DataConfig(dataset=gsm_symbolic.NAME, limit=3))
    assert three.to_list() == five.to_list()[:3]
    assert all(rewards.parse_gold(a) is not None for a in five["answer"])
    assert not any(q.endswith(gsm_symbolic.SUFFIX) for q in five["question"])


@needs_reasoning_gym
def test_tiny_model_evaluates_on_gsm_symbolic(tiny_assets, tmp_path):
    out = tmp_path / "eval"
    assert eval_grpo.main(base_only_args(tiny_assets, "--limit", "4", "--out", str(out))) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["dataset"] == gsm_symbolic.NAME
    assert summary["settings"]["generated"] == {
        "name": gsm_symbolic.NAME,
        "generator": "reasoning-gym 0.1.25 gsm_symbolic",
        "seed": 42,
        "size": 4,
    }
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert summary["models"]["base"]["n"] == len(rows) == summary["settings"]["n"] > 0
    expected = load_rows(DataConfig(dataset=gsm_symbolic.NAME, limit=4))
    assert [r["question"] for r in rows] == expected["question"][: len(rows)]


@needs_reasoning_gym
def test_offline_file_holds_the_same_questions_for_a_machine_without_reasoning_gym(tmp_path):
    import offline

    offline.main(["gsm-symbolic", "--out", str(tmp_path), "--limit", "4"])
    from_file = load_rows(DataConfig(dataset=str(tmp_path / "test.jsonl")))
    assert from_file.to_list() == load_rows(DataConfig(dataset=gsm_symbolic.NAME, limit=4)).to_list()
