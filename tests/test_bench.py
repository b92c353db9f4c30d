"""The benchmark's arithmetic and the learning summary, on made-up metrics (the runs themselves need a GPU)."""

import importlib.util
import json
from pathlib import Path

import pytest
from recipe.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench, learning = load("bench"), load("learning")


def timed(times: dict[int, float]) -> list[dict]:
    return [{"step": step, "time": t, "step_time": 0.0} for step, t in times.items()]


@pytest.mark.parametrize(
    "times, spg, warmup, expected",
    [
        pytest.param({1: 0, 2: 100, 3: 103, 4: 106, 5: 109, 6: 112}, 1, 2, 3.0, id="every-step-after-warmup"),
        pytest.param({1: 0, 2: 200, 3: 201, 4: 202, 5: 203, 6: 230}, 1, 2, 1.0, id="median-ignores-one-slow-step"),
        # Generation every 4 steps: the cycle is timed whole and divided, never one cheap step alone.
        pytest.param({s: (s - 1) // 4 * 8.0 + (s - 1) % 4 * 0.1 for s in range(1, 14)}, 4, 1, 2.0, id="spg4-whole-cycles"),
        pytest.param({1: 0, 2: 5}, 1, 4, float("nan"), id="too-few-steps-is-nan"),
    ],
)
def test_steady_state_seconds_per_step(times, spg, warmup, expected):
    result = bench.steady_state(timed(times), spg, warmup)
    assert result == pytest.approx(expected, nan_ok=True)


def test_learning_summary_counts_steps_and_reward_rows_apart(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("training:\n  steps_per_generation: 4\n")
    rows = []
    for step in range(1, 101):
        row = {"step": step, "time": 60.0 * step}
        if step % 4 == 1:  # TRL logs rewards on generation steps only
            row |= {"reward": step / 100, "rewards/strict_format/mean": 0.5, "rewards/correctness/mean": 1.0}
        rows.append(row)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"device": "kept"}))

    assert learning.main(["--run", str(run), "--out", str(out), "--window", "5"]) == 0

    summary = json.loads(out.read_text())
    got = summary["learning"]
    assert summary["device"] == "kept"
    assert (got["steps"], got["reward_rows"]) == (100, 25)
    assert got["training_rewards"]["reward"] == {"first_5": 0.09, "last_5": 0.89}
    assert got["config"] == {"training": {"steps_per_generation": 4}}


@pytest.mark.parametrize("name", list(bench.SETTINGS))
def test_every_setting_resolves_to_a_valid_config(name):
    import train_grpo

    _, config, overrides = bench.SETTINGS[name]
    cfg = load_config(str(config), overrides)
    assert (cfg.training.prompts_per_step, cfg.training.num_generations, cfg.training.max_completion_length) == (1, 6, 200)
    assert cfg.model.compile == (name == "notebook")


@pytest.mark.parametrize(
    "lengths, expected",
    [
        pytest.param([60, 62, 60, 58], [0, 2], id="most-common-length"),
        pytest.param([62, 60, 62, 60], [1, 3], id="tie-takes-the-shorter"),
        pytest.param([70], [0], id="one-row"),
    ],
)
def test_most_common_length_keeps_the_rows_of_the_most_common_prompt_length(lengths, expected):
    rows = [{"question": f"q{i}"} for i in range(len(lengths))]
    assert bench.most_common_length(rows, lengths) == [rows[i] for i in expected]
