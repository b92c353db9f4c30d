"""The benchmark's arithmetic and the learning summary, on made-up metrics (the runs themselves need a GPU)."""

import dataclasses
import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from recipe import memory
from recipe.config import LORA_PROJECTIONS, check_trainer_names, load_config
from recipe.grpo_config import grpo_args

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


bench, learning, models, unsloth_notebook = load("bench"), load("learning"), load("models"), load("unsloth_notebook")


def timed(times: dict[int, float]) -> list[dict]:
    return [{"step": step, "time": t, "step_time": 0.0} for step, t in times.items()]


@pytest.mark.parametrize(
    "times, steps_per_generation, warmup, expected",
    [
        pytest.param({1: 0, 2: 100, 3: 103, 4: 106, 5: 109, 6: 112}, 1, 2, 3.0, id="every-step-after-warmup"),
        pytest.param({1: 0, 2: 200, 3: 201, 4: 202, 5: 203, 6: 230}, 1, 2, 1.0, id="median-ignores-one-slow-step"),
        # Generation every 4 steps: the cycle is timed whole and divided, never one cheap step alone.
        pytest.param(
            {s: (s - 1) // 4 * 8.0 + (s - 1) % 4 * 0.1 for s in range(1, 14)},
            4,
            1,
            2.0,
            id="generate-for-4-steps-whole-cycles",
        ),
        pytest.param({1: 0, 2: 5}, 1, 4, float("nan"), id="too-few-steps-is-nan"),
    ],
)
def test_steady_state_seconds_per_step(times, steps_per_generation, warmup, expected):
    result = bench.steady_state(bench.cycles(timed(times), steps_per_generation, warmup))
    assert result == pytest.approx(expected, nan_ok=True)


def test_cycles_read_the_stamps_metrics_jsonl_writes_to_the_millisecond(tmp_path, monkeypatch):
    """Regression (gpu-2026-12-07m): stamps rounded to 0.1 s gave 4-step cycles of 1.4, 1.5 or 1.7 s, so every
    s/step was a multiple of 0.025 s and the floor ratio moved by 0.2 with one quantum."""
    from types import SimpleNamespace

    from recipe.callbacks import log_metrics

    stamps = iter(1000.0 + 1.4637 * ((s - 1) // 4) + 0.0021 * s for s in range(1, 14))
    monkeypatch.setattr(time, "time", lambda: next(stamps))
    for step in range(1, 14):
        log_metrics(tmp_path, SimpleNamespace(global_step=step), {"step_time": 0.3})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    each = bench.cycles(rows, steps_per_generation=4, warmup=1)
    assert each == pytest.approx([(1.4637 + 4 * 0.0021) / 4] * 3, abs=2e-4)


@pytest.mark.parametrize(
    "call_s, seconds, calls",
    [
        pytest.param(0.0015, 2.0, 1334, id="a-matmul-runs-two-seconds-not-three-calls"),
        pytest.param(1.0, 2.0, 3, id="slow-calls-still-three"),
        pytest.param(0.5, 0.0, 3, id="no-warmup-time-three-calls"),
    ],
)
def test_a_ceiling_is_timed_after_seconds_of_its_operation(call_s, seconds, calls):
    """Regression (gpu-2026-12-07m): three warm-up calls, 5 ms of work, left the first invocation's ceilings 5%
    low, so its floor read 5% high and the default's ratio to it flattered."""
    now, synced = [0.0], []
    made = bench.warm_up(
        lambda: now.__setitem__(0, now[0] + call_s), lambda: synced.append(now[0]), seconds, clock=lambda: now[0]
    )
    assert made == calls
    assert synced[-1] == now[0]  # the GPU has finished the warm-up before the first timed call


def bench_row(prompts: int, cycles: list[float]) -> dict:
    s_per_step = bench.steady_state(cycles)
    return {"s_per_step": s_per_step, "prompts_per_s": round(prompts / s_per_step, 3), "s_per_step_cycles": cycles}


@pytest.mark.parametrize(
    "row, peer, expected",
    [
        pytest.param(bench_row(1, [0.5] * 6), bench_row(1, [0.8] * 6), [1.6, 1.6], id="steady-rows-one-ratio"),
        pytest.param(bench_row(4, [1.0] * 6), bench_row(1, [0.8] * 6), [3.2, 3.2], id="four-prompts-a-step"),
        pytest.param(bench_row(1, [0.5] * 6), bench_row(1, [0.8, 0.8]), None, id="too-few-cycles"),
    ],
)
def test_the_ratio_interval_of_steady_rows(row, peer, expected):
    assert bench.ratio_interval(row, peer) == expected


def test_the_ratio_interval_holds_the_ratio_and_widens_with_the_spread():
    default = bench_row(1, [0.6, 0.55, 0.675, 0.65, 0.625, 0.625])  # 2026-12-07f's rows
    trl = bench_row(1, [1.075, 1.025, 0.925, 1.225, 0.85, 0.8])
    low, high = bench.ratio_interval(default, trl)
    assert low < 0.975 / 0.625 < high and high - low > 0.1
    steadier = bench.ratio_interval(default, bench_row(1, [0.975] * 6))
    assert low < steadier[0] <= steadier[1] < high
    assert bench.ratio_interval(default, trl) == [low, high]  # seeded: one invocation, one interval


@pytest.mark.parametrize(
    "argv, steps_per_generation, steps, cycles",
    [
        pytest.param([], 4, 44, 10, id="sweep-default-ten-cycles"),
        pytest.param([], 8, 84, 10, id="sweep-fast-ten-cycles"),
        pytest.param([], 1, 14, 10, id="sweep-notebook-ten-steps"),
        pytest.param(["--fit", "3B:16"], 4, 12, 2, id="fit-needs-the-peak-only"),
        pytest.param(["--smoke"], 4, 12, 2, id="smoke-checks-the-harness-only"),
        pytest.param(["--steps", "20"], 8, 20, 2, id="asked-for"),
    ],
)
def test_a_sweep_row_times_several_generation_cycles(monkeypatch, argv, steps_per_generation, steps, cycles):
    seen = []
    monkeypatch.setattr(bench, "sweep", lambda args: seen.append(args) or 0)
    monkeypatch.setattr(bench, "fit", lambda args: seen.append(args) or 0)
    monkeypatch.setattr(sys, "argv", ["bench.py", *argv, "--out", "/nonexistent/s.json"])
    assert bench.main() == 0
    assert bench.row_steps(seen[0], steps_per_generation) == steps
    rows = timed({s: float(s) for s in range(1, steps + 1)})
    assert len(bench.cycles(rows, steps_per_generation, warmup=4)) == cycles


@pytest.mark.parametrize(
    "printed, steps",
    [
        pytest.param({"default": {"steps": 28}, "trl": {"steps": 28}}, 28, id="rows-say-so"),
        pytest.param({"default": {"steps": 28}, "notebook": {"steps": 10}}, None, id="rows-of-other-cycles-differ"),
        pytest.param({"default": {"s_per_step": 0.6}}, 12, id="rows-before-they-said-ran-12"),
        pytest.param({}, 12, id="no-row-finished"),
    ],
)
def test_a_rebuilt_sweep_records_the_steps_its_log_ran_not_todays_default(printed, steps):
    assert bench.logged_steps(printed) == steps


def metrics_rows(steps: int, every: int) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "time": 1000.0 + 60.0 * step, "step_time": 60.0}
        if step % every == 1 or every == 1:  # TRL logs rewards on generation steps only
            row |= {
                "reward": step / 100,
                "rewards/strict_format/mean": 0.5,
                "rewards/correctness/mean": 1.0,
            }
        rows.append(row)
    return rows


def write_run(run: Path, steps=100, every=4, held_out=None, symbolic=None):
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"training:\n  steps_per_generation: {every}\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics_rows(steps, every)))
    for folder, accuracy in (("eval", held_out), ("eval-gsm-symbolic", symbolic)):
        if accuracy is not None:
            (run / folder).mkdir()
            models = {
                "base": {"accuracy": 0.28, "strict_format": 0.5, "n": 200},
                "trained": {"accuracy": accuracy, "strict_format": 0.9, "n": 200},
            }
            (run / folder / "summary.json").write_text(json.dumps({"models": models}))


def test_a_learning_run_counts_steps_and_reward_rows_apart_and_times_from_its_first_step(tmp_path):
    write_run(tmp_path / "run", steps=100, every=4)
    got = learning.summarize_run(tmp_path / "run", window=5)
    assert (got["steps"], got["reward_rows"]) == (100, 25)
    assert got["minutes"] == 100.0  # 100 steps of 60 s, the first one's included
    assert got["training_rewards"]["reward"] == {"first_5": 0.09, "last_5": 0.89}
    assert got["config"] == {"training": {"steps_per_generation": 4}}
    assert got["curve"][0] == [1.0, 1.0] and got["curve"][-1][0] == 97.0


def test_a_run_with_few_reward_rows_compares_its_halves_not_one_window_twice(tmp_path):
    # 2026-12-07e: the 25-step arm logged 7 reward rows, and its first 20 and last 20 were the same rows.
    write_run(tmp_path / "run", steps=25, every=4)
    rewards = learning.summarize_run(tmp_path / "run")["training_rewards"]["reward"]
    assert list(rewards) == ["first_3", "last_3"] and rewards["first_3"] < rewards["last_3"]


@pytest.mark.parametrize(
    "log, expected, merged",
    [
        pytest.param("INFO [kv_cache_utils.py:2177] GPU KV cache size: 25,248 tokens\n", 25_248, False, id="vllm-line"),
        pytest.param(
            "GPU KV cache size: 87,152 tokens\n... GPU KV cache size: 9 tokens\n",
            87_152,
            False,
            id="training-engine-first",
        ),
        pytest.param("no engine started\n", None, False, id="none-reported"),
        pytest.param(
            "GPU KV cache size: 9 tokens\nUnsloth: Merged-weight rollouts on (all): folding the adapter into 252\n",
            9,
            True,
            id="folded-rollouts-seen",
        ),
    ],
)
def test_a_learning_run_reports_its_kv_cache_and_whether_it_folded_its_rollouts(tmp_path, log, expected, merged):
    write_run(tmp_path / "run", steps=8, every=4)
    (tmp_path / "run" / "config.yaml").write_text(
        "model: {max_seq_length: 512}\ntraining: {prompts_per_step: 4, num_generations: 8, steps_per_generation: 4}\n"
    )
    (tmp_path / "run" / "lane.log").write_text(log)
    got = learning.summarize_run(tmp_path / "run")
    assert (got["kv_cache_tokens"], got["generation_batch_tokens"]) == (expected, 128 * 512)
    assert got["merged_rollouts"] is merged


@pytest.mark.parametrize(
    "accuracies, verdict",
    [
        pytest.param({"default": [0.48, 0.50, 0.46], "fast": [0.47, 0.49, 0.45]}, True, id="1-point-below-lands"),
        pytest.param({"default": [0.48, 0.50, 0.46], "fast": [0.46, 0.48, 0.44]}, True, id="2-points-below-lands"),
        pytest.param({"default": [0.48, 0.50, 0.46], "fast": [0.46, 0.47, 0.44]}, False, id="2.3-points-below-fails"),
        pytest.param({"default": [0.40], "fast": [0.55, 0.50]}, True, id="better-lands"),
    ],
)
def test_an_arm_lands_only_within_2_points_of_the_defaults_mean(accuracies, verdict):
    results = [
        {"arm": arm, "seed": i, "held_out": {"accuracy": a, "strict_format": 1.0}, "training": {"minutes": 5.0}}
        for arm, values in accuracies.items()
        for i, a in enumerate(values)
    ]
    arms = learning.aggregate(results)
    assert arms["fast"]["within_2_points_of_default"] is verdict
    assert arms["default"]["held_out_accuracy"]["n"] == len(accuracies["default"])
    if len(accuracies["default"]) > 1:
        assert arms["default"]["held_out_accuracy"]["sd"] > 0


def run_config(run):
    """A learning run's configuration: the learning config with its training command's --set pairs."""
    train = run.commands[0]
    cfg = load_config(str(ROOT / learning.CONFIG), [train[i + 1] for i, word in enumerate(train) if word == "--set"])
    check_trainer_names(cfg.training)  # train_grpo checks these after Unsloth's import, in the lane
    return cfg


def test_the_learning_arms_train_each_seed_apart_with_the_shipped_configs_optimisation(tmp_path):
    runs = learning.plan(["default", "fast", "notebook"], [3407, 3408], 200, 0.04, tmp_path, "sym.jsonl", "python")
    assert len(runs) == 6 and len({r.out for r in runs}) == 6
    # Seed by seed, so that started one after another no arm always starts last.
    assert [(r.arm, r.seed) for r in runs[:4]] == [
        ("default", 3407),
        ("fast", 3407),
        ("notebook", 3407),
        ("default", 3408),
    ]
    assert len({r.env["UNSLOTH_COMPILE_LOCATION"] for r in runs}) == 6  # side by side they would rewrite one folder
    for run in runs:
        _, held_out, symbolic = run.commands
        cfg = run_config(run)
        times = learning.ARMS[run.arm].prompts
        assert (cfg.training.seed, cfg.model.gpu_memory_utilization) == (run.seed, 0.04)
        assert cfg.training.max_steps * times == 200
        shipped = {"fast": "configs/fast-4090.yaml", "notebook": "configs/notebook-4090.yaml"}.get(run.arm)
        if shipped:
            ship = load_config(str(ROOT / shipped))
            for key in ("steps_per_generation", "optim", "beta", "loss_type", "weight_decay"):
                assert getattr(cfg.training, key) == getattr(ship.training, key), (run.arm, key)
            # The shipped config's questions a step and its steps, against config.yaml's, as the arm scales them
            # (the notebook's counts epochs).
            default = load_config(str(bench.DEFAULT_YAML)).training
            assert ship.training.prompts_per_step == times * default.prompts_per_step
            assert ship.training.max_steps in (-1, default.max_steps // times)
        assert held_out[held_out.index("--adapter") + 1] == str(run.out / "adapter")
        assert symbolic[symbolic.index("--dataset") + 1] == "sym.jsonl"


@pytest.mark.parametrize("arm, row, times", [("pps2", "pps2", 2), ("fast", "fast", 4)], ids=["pps2", "fast"])
def test_an_arm_with_more_prompts_a_step_trains_the_same_questions_in_fewer_steps(tmp_path, arm, row, times):
    runs = learning.plan(["default", arm], [3407], 100, 0.04, tmp_path, "sym.jsonl", "python")
    cfgs = {run.arm: run_config(run) for run in runs}
    default, more = cfgs["default"].training, cfgs[arm].training
    assert more.prompts_per_step == times * default.prompts_per_step
    assert more.max_steps * more.prompts_per_step == default.max_steps * default.prompts_per_step == 100 * 4
    # The bench row's optimisation, on the learning config (checkpointing changes memory, not the update).
    setting = bench.SETTINGS[row]
    bench_row = load_config(str(setting.config), list(setting.overrides)).training
    assert (more.optim, more.steps_per_generation) == (bench_row.optim, bench_row.steps_per_generation)
    assert bench_row.prompts_per_step == times


def test_the_previous_defaults_arm_trains_with_the_bench_rows_switch_and_evaluates_like_every_arm(tmp_path):
    runs = {
        run.arm: run for run in learning.plan(["default", "lora-8bit"], [3407], 100, 0.04, tmp_path, "s.jsonl", "py")
    }
    train, *evals = runs["lora-8bit"].commands
    switches = [f"{name}={value}" for name, value in bench.SETTINGS["lora-8bit"].env]
    assert switches == ["UNSLOTH_VLLM_MERGED_ROLLOUT=0"]
    assert train[: 2 + len(switches)] == ("env", *switches, "py")
    previous, default = run_config(runs["lora-8bit"]), run_config(runs["default"])
    assert (previous.training.optim, default.training.optim) == ("paged_adamw_8bit", "adamw_torch_fused")
    previous.training.optim = default.training.optim
    assert (previous.model, previous.lora, previous.training) == (default.model, default.lora, default.training)
    assert runs["default"].commands[0][0] == "py"  # no switch, no env prefix
    datasets = [[e[e.index("--dataset") + 1] for e in run.commands[1:]] for run in runs.values()]
    assert datasets[0] == datasets[1] == [learning.HELD_OUT, "s.jsonl"]
    assert not any("MERGED" in word for e in evals for word in e)
    assert "MERGED" not in str(runs["lora-8bit"].env)
    # Its vLLM share is still set at its start, after the env prefix.
    assert "model.gpu_memory_utilization=0.5" in learning.with_share(train, 0.5)


def test_a_switch_exported_in_the_shell_reaches_no_lane(tmp_path, monkeypatch):
    monkeypatch.setenv("UNSLOTH_VLLM_MERGED_ROLLOUT", "1")
    lane = learning.Run("a", 1, tmp_path / "lane", (("bash", "-c", "echo ${UNSLOTH_VLLM_MERGED_ROLLOUT:-unset}"),), {})
    assert learning.run_all([lane], stagger_s=0, deadline_s=10) == {str(tmp_path / "lane"): 0}
    assert (tmp_path / "lane" / "lane.log").read_text() == "unset\n"


def test_no_arm_sets_its_prompts_a_step_itself():
    # plan() sets prompts_per_step from Arm.prompts and scales the steps with it; an arm's own value would win.
    assert not [name for name, arm in learning.ARMS.items() if any("prompts_per_step" in o for o in arm.overrides)]


def test_steps_an_arm_cannot_divide_are_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        learning.main(["--arms", "default,pps2", "--steps", "101", "--outputs", str(tmp_path), "--dry-run"])
    assert stop.value.code == 2 and "--steps 101 does not divide" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arms, header",
    [
        pytest.param(["default", "lora-8bit"], "100 steps", id="same-steps"),
        pytest.param(["default", "pps2"], "100 steps (pps2 50: the same questions)", id="fewer-steps-named"),
        pytest.param(["default", "fast"], "100 steps (fast 25: the same questions)", id="fast-config-fewer-steps"),
    ],
)
def test_the_learning_table_says_which_arms_trained_fewer_steps(arms, header):
    runs = [{"arm": arm, "seed": 3407} for arm in arms]  # none evaluated yet
    summary = {"steps": 100, "seeds": 3, "device": "H100", "date": "2026-12-06", "arms": learning.aggregate(runs)}
    assert learning.table(summary).startswith(f"SmolLM2 learning check, {header}, 3 seeds per arm")


def test_the_default_arm_is_config_yamls_optimisation():
    cfg = load_config(str(ROOT / learning.CONFIG), list(learning.ARMS["default"].overrides))
    shipped = load_config(str(bench.DEFAULT_YAML))
    assert (cfg.training.steps_per_generation, cfg.training.optim) == (4, shipped.training.optim)
    # Folded rollouts come from the 16-bit base alone, as in a user's run: no switch of its own.
    assert not learning.ARMS["default"].env and not cfg.model.load_in_4bit and not shipped.model.load_in_4bit


def test_runs_go_side_by_side_and_one_past_the_deadline_is_stopped(tmp_path):
    make = learning.Run
    quick = make("a", 1, tmp_path / "quick", (("bash", "-c", "echo hi"), ("bash", "-c", "exit 3")), {})
    slow = make("a", 2, tmp_path / "slow", (("sleep", "30"),), {})
    codes = learning.run_all([quick, slow], stagger_s=0, deadline_s=3)
    assert codes == {str(tmp_path / "quick"): 3, str(tmp_path / "slow"): None}
    assert (tmp_path / "quick" / "lane.log").read_text() == "hi\n"


def test_a_run_stopped_at_the_deadline_leaves_nothing_it_started_running(tmp_path):
    pid_file = tmp_path / "child.pid"
    lane = learning.Run("a", 1, tmp_path / "lane", (("bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"),), {})
    assert learning.run_all([lane], stagger_s=0, deadline_s=2) == {str(tmp_path / "lane"): None}
    child = Path(f"/proc/{pid_file.read_text().strip()}/status")
    deadline = time.time() + 10
    while child.exists() and "zombie" not in child.read_text() and time.time() < deadline:
        time.sleep(0.1)
    assert not child.exists() or "zombie" in child.read_text()  # gone, or dead and waiting for its reaper


def evaluation_command(out: Path, script: str) -> tuple[str, ...]:
    """An eval_grpo.py stand-in: bash runs ``script`` with $1 the --out folder."""
    return ("bash", "-c", script, "--out", str(out))


WRITES_SUMMARY = 'mkdir -p "$1" && echo {} > "$1/summary.json" && echo evaluated'


@pytest.mark.parametrize(
    "trained, code, script, budget_s, expected",
    [
        pytest.param(True, 1, WRITES_SUMMARY, 10, 0, id="failed-beside-neighbours-passes-alone"),
        pytest.param(True, 1, "exit 4", 10, 4, id="fails-again-keeps-the-new-code"),
        pytest.param(True, 1, "sleep 30", 1, None, id="out-of-time"),
        pytest.param(False, 1, WRITES_SUMMARY, 10, 1, id="training-unfinished-nothing-to-evaluate"),
        pytest.param(True, None, WRITES_SUMMARY, 10, None, id="stopped-at-the-deadline-not-retried"),
        pytest.param(True, 0, WRITES_SUMMARY, 10, 0, id="succeeded-not-rerun"),
    ],
)
def test_a_failed_evaluation_is_retried_alone_once_every_lane_has_ended(
    tmp_path, trained, code, script, budget_s, expected
):
    out = tmp_path / "graphed-s3408"
    (out / "eval").mkdir(parents=True)
    (out / "eval" / "summary.json").write_text("{}")  # the held-out evaluation went through
    if trained:
        (out / "adapter").mkdir()
        (out / "adapter" / "recipe_complete.json").write_text("{}")
    (out / "lane.log").write_text("training\n")
    commands = (("true",), evaluation_command(out / "eval", "exit 9"), evaluation_command(out / "eval-sym", script))
    run = learning.Run("graphed", 3408, out, commands, {})
    codes = learning.retry_evaluations([run], {str(out): code}, budget_s)
    assert codes == {str(out): expected}
    retried = trained and code not in (0, None)
    assert (out / "eval-sym" / "summary.json").exists() is (retried and expected == 0)
    assert (out / "lane.log").read_text().startswith("training\n")  # appended to, not replaced
    assert ("evaluated" in (out / "lane.log").read_text()) is (retried and expected == 0)


def test_each_run_gets_the_vllm_memory_asked_for_as_a_share_of_what_is_free_at_its_start(tmp_path, monkeypatch):
    free = iter([60.0, 30.0])
    monkeypatch.setattr(learning, "free_gib", lambda: next(free))
    runs = [
        learning.Run("a", seed, tmp_path / f"r{seed}", (("echo", "--set", "model.gpu_memory_utilization=0.06"),), {})
        for seed in (1, 2)
    ]
    learning.run_all(runs, stagger_s=0, deadline_s=10, vllm_gib=6.0)
    shares = [(r.out / "lane.log").read_text().split()[-1] for r in runs]
    assert shares == ["model.gpu_memory_utilization=0.1", "model.gpu_memory_utilization=0.2"]


def test_runs_copied_off_a_machine_are_summarised_into_latest_json_and_plotted(tmp_path):
    learn = tmp_path / "learn"
    for arm, accuracy in (("default", 0.48), ("fast", 0.50)):
        for seed in (3407, 3408):
            write_run(learn / f"{arm}-s{seed}", steps=40, held_out=accuracy + (seed - 3407) / 100, symbolic=0.02)
    write_run(learn / "fast-s3409", steps=10)  # trained, but stopped before its evaluation
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"invocation": "kept"}))
    argv = ["--summarize", str(learn), "--arms", "default,fast", "--seeds", "3", "--steps", "40"]
    assert learning.main([*argv, "--device", "H100 80GB", "--note", "one was cut", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert summary["invocation"] == "kept"
    got = summary["learning"]
    assert got["device"] == "H100 80GB" and got["steps"] == 40 and len(got["runs"]) == 6
    assert got["note"] == "one was cut" and "--device 'H100 80GB'" in got["command"]  # rerunnable as printed
    fast = got["arms"]["fast"]
    assert fast["seeds_finished"] == 2 and fast["held_out_accuracy"]["mean"] == 0.505
    assert fast["vs_default_points"] == 2.0 and fast["within_2_points_of_default"]
    assert got["arms"]["default"]["gsm_symbolic_accuracy"]["mean"] == 0.02
    assert "| fast |" in (tmp_path / "learning.md").read_text()
    assert learning.main(["--plot", "--out", str(out)]) == 0
    assert (tmp_path / "time-to-accuracy.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", list(bench.SETTINGS))
def test_every_setting_trains_6_completions_of_a_prompt_a_step(name):
    setting = bench.SETTINGS[name]
    cfg = load_config(str(setting.config), list(setting.overrides))
    check_trainer_names(cfg.training)  # train_grpo checks these after Unsloth's import, in the row
    # ppsN: the levers that take N prompts a step; the fast config takes 4.
    prompts = int(name[3]) if name.startswith("pps") else 4 if name == "fast" else 1
    assert (cfg.training.prompts_per_step, cfg.training.num_generations, cfg.training.max_completion_length) == (
        prompts,
        6,
        200,
    )
    assert cfg.training.learning_rate == 5e-6
    notebook = setting.entry == "notebook"
    assert cfg.model.compile == notebook  # the notebook compiles
    if not notebook:  # the optimisation: KL 0.04, the grpo loss, the notebook's temperature
        assert (cfg.training.beta, cfg.training.loss_type, cfg.training.temperature) == (0.04, "grpo", 0.9)


@pytest.mark.parametrize(
    "name, sampling",
    [
        ("default", {"detokenize": False}),
        ("trl", {"detokenize": True}),
        ("detok", {"detokenize": True}),
    ],
)
def test_plain_trls_row_keeps_vllms_detokenizer_which_the_recipe_turns_off(tmp_path, name, sampling):
    setting = bench.SETTINGS[name]
    cfg = load_config(str(setting.config), [*setting.overrides, f"output.dir={tmp_path}"])
    args = grpo_args(cfg, cfg.model.backend if cfg.model.backend != "auto" else "unsloth", [7], world=1)
    assert args.generation_kwargs == {"stop_token_ids": [7], **sampling}


def test_the_notebook_row_is_the_notebooks_code_on_the_pinned_stack():
    # What the notebook sets, and what TRL 1.14.2 with Unsloth picks for what it leaves unset.
    cfg = load_config(str(bench.NOTEBOOK_YAML))
    t = cfg.training
    assert (cfg.model.load_in_4bit, cfg.model.compile, cfg.model.vllm_compile) == (True, True, True)
    assert (cfg.model.max_seq_length, cfg.model.gpu_memory_utilization, cfg.lora.alpha) == (1024, 0.59, cfg.lora.r)
    assert cfg.lora.gradient_checkpointing == "unsloth"
    assert (t.steps_per_generation, t.beta, t.loss_type, t.temperature) == (1, 0.0, "dapo", 1.0)
    assert (t.optim, t.weight_decay, t.max_grad_norm, t.warmup_ratio) == ("adamw_8bit", 0.001, 0.1, 0.1)


@pytest.mark.parametrize(
    "name, changes",
    [
        pytest.param(
            "fast",
            {"prompts_per_step": 4, "max_steps": 250, "lora.gradient_checkpointing": "unsloth"},
            id="fast-config-four-prompts-checkpointed-same-questions",
        ),
        pytest.param("pps2", {"prompts_per_step": 2}, id="two-prompts-a-step"),
        pytest.param(
            "pps2gc", {"prompts_per_step": 2, "lora.gradient_checkpointing": "unsloth"}, id="two-prompts-checkpointed"
        ),
        pytest.param("compiled", {"model.vllm_compile": True}, id="vllm-compiled"),
        pytest.param("detok", {"trl": {"generation_kwargs": {"detokenize": True}}}, id="vllm-detokenizer-back-on"),
        pytest.param(
            "lora-8bit",
            {"optim": "paged_adamw_8bit", "env.UNSLOTH_VLLM_MERGED_ROLLOUT": "0"},
            id="previous-default-unfolded-8bit",
        ),
    ],
)
def test_each_lever_row_changes_only_what_it_names(name, changes):
    setting = bench.SETTINGS[name]
    lever = dataclasses.asdict(load_config(str(setting.config), list(setting.overrides)))
    default = dataclasses.asdict(load_config(str(bench.DEFAULT_YAML)))
    lever["output"].pop("dir"), default["output"].pop("dir")
    lever["env"], default["env"] = dict(setting.env), dict(bench.SETTINGS["default"].env)
    for key, value in changes.items():
        section, field = key.split(".") if "." in key else ("training", key)
        assert lever[section][field] == value and default[section].get(field) != value
        lever[section].pop(field), default[section].pop(field, None)
    assert lever == default


@pytest.fixture
def launched(tmp_path, monkeypatch):
    """launch(name) runs bench.run_setting with the row's process stubbed out (exit code 1); ``calls`` records
    each process's (command, environment)."""
    calls = []

    def call(command, env=None, **kwargs):
        calls.append((command, env))
        return 1

    monkeypatch.setattr(bench, "WORK", tmp_path)
    monkeypatch.setattr(bench.subprocess, "call", call)

    def launch(name, steps=12, fresh=False):
        args = bench.argparse.Namespace(steps=steps, warmup=4, profile=[], smoke=False, fresh_caches=fresh)
        return bench.run_setting(name, bench.SETTINGS[name], args, tmp_path / "model", tmp_path / "data.jsonl", None)

    launch.calls = calls
    return launch


@pytest.mark.parametrize(
    "name, steps",
    [
        pytest.param("default", 44, id="spg4"),
        pytest.param("fast", 44, id="fast-spg4"),
        pytest.param("notebook-script", 14, id="notebook-spg1"),
    ],
)
def test_a_sweep_row_trains_its_warmup_and_ten_of_its_own_cycles(launched, name, steps):
    launched(name, steps=None)
    command = launched.calls[-1][0]
    assert f"training.max_steps={steps}" in command


def test_a_rows_environment_reaches_its_process_and_its_row(launched, monkeypatch):
    monkeypatch.setenv("KEPT", "yes")
    row = launched("lora-8bit")
    env = launched.calls[-1][1]
    assert env["UNSLOTH_VLLM_MERGED_ROLLOUT"] == "0" and env["KEPT"] == "yes"
    assert row["env"] == {"UNSLOTH_VLLM_MERGED_ROLLOUT": "0"}
    # Exported in the shell, the switch must not turn the default row into the unfolded one.
    monkeypatch.setenv("UNSLOTH_VLLM_MERGED_ROLLOUT", "0")
    row = launched("default")
    env = launched.calls[-1][1]
    assert "UNSLOTH_VLLM_MERGED_ROLLOUT" not in env and env["KEPT"] == "yes"
    assert "env" not in row
    launched("v1runner")
    assert launched.calls[-1][1]["VLLM_USE_V2_MODEL_RUNNER"] == "0"
    launched("default")
    assert "VLLM_USE_V2_MODEL_RUNNER" not in launched.calls[-1][1]
    # Standby off in the shell must not turn the notebook row into its exported script.
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "0")
    launched("notebook")
    assert "UNSLOTH_VLLM_STANDBY" not in launched.calls[-1][1]  # the notebook's own cell sets it in the row
    launched("notebook-script")
    assert launched.calls[-1][1]["UNSLOTH_VLLM_STANDBY"] == "0"


# The cache variables checked in the pinned sources (the commit that added --fresh-caches cites where).
CACHE_VARIABLES = [
    "TRITON_CACHE_DIR",
    "TORCHINDUCTOR_CACHE_DIR",
    "TMPDIR",
    "VLLM_CACHE_ROOT",
    "FLASHINFER_WORKSPACE_BASE",
    "UNSLOTH_COMPILE_LOCATION",
    "UNSLOTH_MEGA_CACHE_DIR",
    "CUDA_CACHE_PATH",
]


@pytest.mark.parametrize(
    "name, exported",
    [
        pytest.param("default", {}, id="unsloth"),
        pytest.param("trl", {}, id="plain-trl"),
        pytest.param("notebook", {}, id="notebook"),
        pytest.param("default", {"TRITON_CACHE_DIR": "/shared/triton", "TMPDIR": "/scratch"}, id="the-shells-kept"),
    ],
)
def test_without_fresh_caches_a_row_gets_no_cache_variable(monkeypatch, name, exported):
    for variable in CACHE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in exported.items():
        monkeypatch.setenv(variable, value)
    env = bench.row_env(bench.SETTINGS[name])
    assert {variable: env[variable] for variable in CACHE_VARIABLES if variable in env} == exported


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(["default", "trl"], id="default-then-trl"),
        pytest.param(["trl", "default"], id="trl-then-default"),
        pytest.param(["notebook", "notebook-script"], id="the-notebooks"),
        pytest.param(["default", "default"], id="a-row-run-again"),
    ],
)
def test_with_fresh_caches_each_row_starts_on_empty_folders_of_its_own(tmp_path, monkeypatch, rows):
    monkeypatch.setenv("TRITON_CACHE_DIR", "/shared/triton")  # exported in the shell: a fresh row ignores it
    started = []  # per row: each variable's folder and what it held as the row started

    def call(command, env=None, **kwargs):
        folders = {variable: Path(env[variable]) for variable in CACHE_VARIABLES}
        started.append({variable: (folder, sorted(folder.iterdir())) for variable, folder in folders.items()})
        for folder in folders.values():
            (folder / "kernel.bin").write_text("compiled")  # what a first run leaves for the next
        return 1

    monkeypatch.setattr(bench, "WORK", tmp_path)
    monkeypatch.setattr(bench.subprocess, "call", call)
    stale = tmp_path / "caches" / rows[0] / "triton" / "kernel.bin"  # left by an invocation cut short
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    args = bench.argparse.Namespace(steps=12, warmup=4, profile=[], smoke=False, fresh_caches=True)
    for name in rows:
        bench.run_setting(name, bench.SETTINGS[name], args, tmp_path / "model", tmp_path / "data.jsonl", None)
    for name, folders in zip(rows, started):
        assert {variable: folder.parent for variable, (folder, _) in folders.items()} == dict.fromkeys(
            CACHE_VARIABLES, tmp_path / "caches" / name
        )
        assert len({folder for folder, _ in folders.values()}) == len(CACHE_VARIABLES)  # one folder per cache
        assert {variable: held for variable, (_, held) in folders.items()} == dict.fromkeys(CACHE_VARIABLES, [])
    assert list((tmp_path / "caches").iterdir()) == []  # each row's caches went with it


@pytest.mark.parametrize(
    "fresh, said", [pytest.param(True, "fresh", id="fresh"), pytest.param(False, None, id="shared")]
)
def test_start_ups_on_fresh_caches_say_so_in_each_row_the_invocation_and_the_table(launched, tmp_path, fresh, said):
    rows = [launched("default", fresh=fresh), launched("trl", fresh=fresh)]
    args = bench.argparse.Namespace(out=tmp_path / "latest.json", steps=12, warmup=4)
    bench.write_summary(args, rows, "id", "GPU", 60, 23.99, None)
    summary = json.loads(args.out.read_text())
    first_line = args.out.with_suffix(".md").read_text().splitlines()[0]
    assert [row.get("caches") for row in summary["settings"]] == [said, said]
    assert (summary.get("caches"), "fresh compile caches" in first_line) == (said, fresh)


def test_the_notebook_row_runs_the_notebooks_own_calls_which_the_recipes_notebook_config_mirrors():
    notebooks = {name for name, s in bench.SETTINGS.items() if s.entry == "notebook"}
    assert notebooks == {"notebook", "notebook-script"}
    assert all(s.entry == "train_grpo" for name, s in bench.SETTINGS.items() if name not in notebooks)
    nb, cfg = unsloth_notebook, load_config(str(bench.NOTEBOOK_YAML))
    m, t, peft = nb.MODEL, nb.TRAINING, nb.PEFT
    assert nb.ENVIRONMENT == {"UNSLOTH_VLLM_STANDBY": "1"}
    assert (m["max_seq_length"], m["load_in_4bit"], m["gpu_memory_utilization"]) == (
        cfg.model.max_seq_length,
        cfg.model.load_in_4bit,
        cfg.model.gpu_memory_utilization,
    )
    assert (peft["r"], peft["lora_alpha"], m["max_lora_rank"]) == (cfg.lora.r, cfg.lora.alpha, cfg.lora.r)
    assert set(peft["target_modules"]) == set(cfg.lora.target_modules) == set(LORA_PROJECTIONS)
    assert peft["use_gradient_checkpointing"] == cfg.lora.gradient_checkpointing
    c = cfg.training
    for key in ("learning_rate", "adam_beta1", "adam_beta2", "weight_decay", "warmup_ratio", "lr_scheduler_type"):
        assert t[key] == getattr(c, key), key
    assert (t["optim"], t["max_grad_norm"], t["num_generations"], t["max_completion_length"]) == (
        c.optim,
        c.max_grad_norm,
        c.num_generations,
        c.max_completion_length,
    )
    assert (t["per_device_train_batch_size"], t["gradient_accumulation_steps"]) == (1, 1)  # one prompt a step
    assert list(cfg.rewards) == nb.REWARDS


def test_the_notebook_script_row_is_the_notebook_row_with_standby_off():
    notebook, script = bench.SETTINGS["notebook"], bench.SETTINGS["notebook-script"]
    assert (script.config, script.overrides, script.entry) == (notebook.config, notebook.overrides, notebook.entry)
    assert (dict(notebook.env), dict(script.env)) == ({}, {"UNSLOTH_VLLM_STANDBY": "0"})


@pytest.mark.parametrize(
    "exported, standby, env_after",
    [
        pytest.param(None, True, "1", id="the-notebooks-first-cell"),
        pytest.param("0", False, "0", id="the-exported-script"),
    ],
)
def test_the_notebooks_standby_is_its_own_unless_the_row_turns_it_off(monkeypatch, exported, standby, env_after):
    monkeypatch.setattr(unsloth_notebook.backend, "import_unsloth", lambda model: None)
    if exported is None:
        monkeypatch.delenv("UNSLOTH_VLLM_STANDBY", raising=False)
    else:
        monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", exported)
    assert unsloth_notebook.import_unsloth(None) is standby
    assert unsloth_notebook.os.environ["UNSLOTH_VLLM_STANDBY"] == env_after


@pytest.mark.parametrize(
    "card_gib, share",
    [
        pytest.param(79.18, 0.87875, id="h100-as-unsloth-logged-it"),  # "Changing gpu_memory_utilization to 0.87875"
        pytest.param(23.99, 0.78375, id="rtx-4090"),
        pytest.param(16.0, 0.76, id="16gb"),
        pytest.param(8.0, 0.7125, id="8gb"),
    ],
)
def test_the_notebook_row_asks_for_the_standby_share_unsloth_picks_on_the_emulated_card(card_gib, share):
    assert unsloth_notebook.standby_share(card_gib) == share


def test_the_notebook_script_on_a_cpu_says_it_needs_a_gpu_in_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would train")
    argv = ["--config", str(bench.NOTEBOOK_YAML), "--set", f"output.dir={tmp_path / 'out'}"]
    assert unsloth_notebook.main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: bench/unsloth_notebook.py calls Unsloth directly, which needs a CUDA GPU"
    ]
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    "entry, config, imported",
    [
        pytest.param("train_grpo", "config.yaml", "recipe", id="recipe-row"),
        pytest.param("notebook", "configs/notebook-4090.yaml", "notebook", id="notebook-row"),
    ],
)
def test_a_capped_row_imports_unsloth_before_cudas_first_use(monkeypatch, tmp_path, entry, config, imported):
    # Unsloth sets the CUDA allocator's options on import; CUDA's first use fixes them, as train_grpo.main() knows.
    events = []

    class FirstUse(Exception):
        pass

    def cuda_used(*args, **kwargs):
        events.append("cuda")
        raise FirstUse

    monkeypatch.setattr(bench.backends, "resolve_backend", lambda cfg, *a, **k: "unsloth")
    monkeypatch.setattr(
        bench.backends, "import_unsloth", lambda model, training=False: events.append("recipe" * training)
    )
    monkeypatch.setattr(bench.unsloth_notebook, "import_unsloth", lambda model: events.append("notebook"))
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", cuda_used)
    with pytest.raises(FirstUse):
        bench.run_capped(23.99, tmp_path / "profile.jsonl", ["--config", str(ROOT / config)], entry=entry)
    assert events == [imported, "cuda"]


def test_the_notebook_row_is_launched_through_its_own_entry(launched):
    for name in ("notebook", "default"):
        launched(name)
    entries = [command[command.index("--entry") + 1] for command, _ in launched.calls]
    assert entries == ["notebook", "train_grpo"]


@pytest.mark.parametrize("name, forecast", [("default", True), ("notebook", False)])
def test_only_the_recipes_rows_carry_the_recipes_memory_forecast(name, forecast):
    row = {"name": name, "exit_code": 0, "backend": "unsloth", "peak_gpu_gib": 16.0, "fits": True}
    row = bench.annotate(row, name, "id", 60, {"copy_gb_s": 3000, "bf16_tflop_s": 780}, 23.99)
    assert ("predicted_peak_gib" in row) is forecast and ("forecast_error" in row) is forecast
    assert sum(row["floor_s_per_step"].values()) > 0


def test_a_smoke_run_leaves_out_the_rows_that_need_unsloth(tmp_path, monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(bench, "WORK", tmp_path)
    monkeypatch.setattr(bench.subprocess, "check_call", lambda *a, **k: 0)
    monkeypatch.setattr(bench, "bench_prompt_tokens", lambda model, data: 60)
    monkeypatch.setattr(
        bench, "run_setting", lambda name, *a: ran.append(name) or {"name": name, "description": "", "exit_code": 1}
    )
    monkeypatch.setattr(bench, "annotate", lambda row, *a: row)
    monkeypatch.setattr(
        sys, "argv", ["bench.py", "--smoke", "--settings", "default,notebook", "--out", str(tmp_path / "s.json")]
    )
    assert bench.main() == 0
    assert ran == ["default"] and "notebook left out" in capsys.readouterr().out


def test_prepare_builds_the_model_a_sweep_would_build_and_nothing_else(monkeypatch):
    built = []
    monkeypatch.setattr(bench, "ensure_model", lambda size: built.append(size))
    monkeypatch.setattr(bench, "sweep", lambda args: pytest.fail("--prepare ran the sweep"))
    monkeypatch.setattr(sys, "argv", ["bench.py", "--prepare", "3B"])
    assert bench.main() == 0 and built == ["3B"]


def test_the_sweep_holds_the_peers_a_user_would_pick_instead():
    assert {"notebook", "default", "trl"} <= set(bench.SETTINGS)
    trl = load_config(str(bench.SETTINGS["trl"].config), list(bench.SETTINGS["trl"].overrides))
    assert trl.model.backend == "trl" and trl.model.fast_inference


@pytest.mark.parametrize(
    "size, trainable",
    [
        # r=32 on all seven projections; the 3B count is the notebook's own log line.
        pytest.param("3B", 59_867_136, id="3B-matches-the-notebook"),
        pytest.param("14B", 137_625_600, id="14B-as-measured"),
    ],
)
def test_shapes_give_the_measured_lora_parameter_counts(size, trainable):
    assert bench.memory.lora_parameters(bench.shape_of(size), 32, LORA_PROJECTIONS) == trainable


def test_floors_scale_with_what_each_phase_moves():
    cfg = load_config(str(ROOT / "config.yaml"))
    limits = {"copy_gb_s": 4000.0, "bf16_tflop_s": 800.0}
    shape = bench.shape_of("3B")
    unsloth, trl = (bench.floors(shape, cfg, backend, 60, limits) for backend in ("unsloth", "trl"))
    weight_bytes = 2 * sum(bench.memory.parameter_counts(shape))
    # 200 decode steps, each reading every 16-bit weight once, shared by the 4 steps of a generation.
    assert unsloth["generate"] == pytest.approx(200 * weight_bytes / 4e12 / 4, rel=1e-3)
    assert unsloth["sync_weights"] == 0.0 and trl["sync_weights"] > 0
    # Two scoring passes (old policy, reference) against two training passes (forward, backward), and a
    # third, the recompute, under gradient checkpointing.
    assert unsloth["train"] == pytest.approx(unsloth["log_probs"], rel=1e-2)
    checkpointed = load_config(str(ROOT / "config.yaml"), ["lora.gradient_checkpointing=unsloth"])
    assert bench.floors(shape, checkpointed, "unsloth", 60, limits)["train"] == pytest.approx(
        unsloth["log_probs"] * 1.5, rel=1e-2
    )
    four_bit = bench.floors(
        shape, load_config(str(ROOT / "config.yaml"), ["model.load_in_4bit=true"]), "unsloth", 60, limits
    )
    assert four_bit["generate"] < unsloth["generate"] / 2


def test_phases_split_the_generation_step_and_leave_training_the_rest():
    profile = {"_prepare_inputs": 0.5, "generate": 0.3, "sync_weights": 0.05}
    assert bench.phases(profile, 0.9) == {"generate": 0.3, "sync_weights": 0.05, "log_probs": 0.15, "train": 0.4}


@pytest.mark.parametrize(
    "log, startup",
    [
        # The trl backend starts vLLM after the load, in GRPOTrainer: start-up counts it on both backends.
        pytest.param("loaded in 2s: 1,000 trainable\nready to train in 61s\n", 61 + 4.5, id="ready-line-counts-vllm"),
        pytest.param("loaded in 90s: 1,000 trainable\n", 90 + 4.5, id="older-log-falls-back-to-load"),
    ],
)
def test_startup_runs_from_load_to_the_end_of_the_first_step(tmp_path, log, startup):
    rows = [{"step": s, "time": s * 1.0, "step_time": 4.5 if s == 1 else 1.0} for s in range(1, 7)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "profile.jsonl").write_text("")
    cfg = load_config(str(ROOT / "config.yaml"), [])
    args = type("Args", (), {"warmup": 2})()
    row = bench.measure(log, tmp_path, cfg, args)
    assert row["startup_s"] == startup
    # The median's cycles come with it (steps 2 to 6: one cycle of config.yaml's 4 steps).
    assert (row["s_per_step_cycles"], row["s_per_step"], row["steps"]) == ([1.0], 1.0, 6)


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
    assert models.most_common_length(rows, lengths) == [rows[i] for i in expected]


def test_a_cut_short_sweep_is_rebuilt_from_its_log(tmp_path):
    row = {
        "name": "default",
        "description": "config.yaml as shipped",
        "exit_code": 0,
        "wall_s": 100.0,
        "backend": "unsloth",
        "s_per_step": 0.75,
        "prompts_per_s": 1.333,
        "startup_s": 90.0,
        "peak_gpu_gib": 17.75,
        "fits": True,
        "load_s": 80,
        "first_step_s": 10.0,
        "phases_s_per_step": {"generate": 0.27, "sync_weights": 0.0, "log_probs": 0.09, "train": 0.39},
    }
    log = tmp_path / "sweep.log"
    gone = {**row, "name": "merged", "description": "a row of an older sweep"}
    log.write_text(
        "=== default: config.yaml \n"
        + json.dumps(row)
        + "\n\n=== merged: config.yaml UNSLOTH_VLLM_MERGED_ROLLOUT=1\n"
        + json.dumps(gone)
        + "\n\n=== fast: configs/fast-4090.yaml\n"
    )
    out = tmp_path / "latest.json"
    argv = [
        "bench.py",
        "--from-log",
        str(log),
        "--device",
        "GPU",
        "--prompt-tokens",
        "60",
        "--out",
        str(out),
        "--ceilings-json",
        '{"copy_gb_s": 4300, "bf16_tflop_s": 788}',
    ]
    sys.argv, saved = argv, sys.argv
    try:
        assert bench.main() == 0
    finally:
        sys.argv = saved
    summary = json.loads(out.read_text())
    default, gone, fast = summary["settings"]
    # A row whose setting no longer exists stays as measured, with nothing computed from today's settings.
    assert gone["s_per_step"] == 0.75 and "floor_s_per_step" not in gone and "forecast_error" not in gone
    assert default["s_per_step"] == 0.75 and default["invocation"] == fast["invocation"] == summary["invocation"]
    assert sum(default["floor_s_per_step"].values()) < default["s_per_step"]
    assert abs(default["forecast_error"]) < 0.15
    assert fast["exit_code"] is None and "unfinished" in fast["error"]
    assert "| fast |" in out.with_suffix(".md").read_text()
    assert summary["steps_per_setting"] == 12  # rows older than the step count ran 12, not today's 6 cycles
    assert "host" not in summary  # logs older than the host line say nothing of it


@pytest.mark.parametrize(
    "notebooks, baseline, ratio",
    [
        pytest.param({"notebook": 0.286, "notebook-script": 0.355}, "notebook-script", 4.23, id="script-faster"),
        pytest.param({"notebook": 0.286, "notebook-script": 0.25}, "notebook", 5.24, id="standby-faster"),
        pytest.param({"notebook": 0.286}, "notebook", 5.24, id="one-notebook"),
    ],
)
def test_x_the_notebook_divides_by_the_faster_notebook(tmp_path, monkeypatch, notebooks, baseline, ratio):
    monkeypatch.setattr(bench, "table", lambda *a: "")
    rows = [{"name": "default", "exit_code": 0, "prompts_per_s": 1.5, "startup_s": 50, "wall_s": 90}]
    rows += [
        {"name": name, "exit_code": 0, "prompts_per_s": rate, "startup_s": 180, "wall_s": 300}
        for name, rate in notebooks.items()
    ]
    args = bench.argparse.Namespace(out=tmp_path / "latest.json", steps=28, warmup=4)
    bench.write_summary(args, rows, "id", "GPU", 60, 23.99, None)
    summary = json.loads(args.out.read_text())
    assert (summary["notebook_baseline"], summary["prompts_per_s_default_vs_notebook_baseline"]) == (baseline, ratio)


def test_a_sweep_lost_mid_row_keeps_the_rows_it_finished_and_names_the_rest(tmp_path, monkeypatch):
    out = tmp_path / "latest.json"
    monkeypatch.setattr(bench, "ensure_model", lambda size: (tmp_path / "model", tmp_path / "train.jsonl"))
    monkeypatch.setattr(bench, "prime_vllm", lambda model: None)
    monkeypatch.setattr(bench, "gpu_name", lambda: "GPU")
    monkeypatch.setattr(bench, "ceilings", lambda: {"copy_gb_s": 4300, "bf16_tflop_s": 788})
    monkeypatch.setattr(bench, "bench_prompt_tokens", lambda model, data: 60)

    def run_setting(name, setting, args, model, data, cap):
        if name == "notebook":
            raise KeyboardInterrupt  # the machine is taken back mid-row
        return {
            "name": name,
            "description": setting.what,
            "exit_code": 0,
            "backend": "unsloth",
            "s_per_step": 0.7,
            "prompts_per_s": 1.4,
            "startup_s": 50.0,
            "wall_s": 90.0,
            "peak_gpu_gib": 15.7,
            "fits": True,
            "phases_s_per_step": {"generate": 0.3, "sync_weights": 0.0, "log_probs": 0.1, "train": 0.3},
        }

    monkeypatch.setattr(bench, "run_setting", run_setting)
    monkeypatch.setattr(sys, "argv", ["bench.py", "--settings", "default,trl,notebook", "--out", str(out)])
    with pytest.raises(KeyboardInterrupt):
        bench.main()
    summary = json.loads(out.read_text())
    assert [r["name"] for r in summary["settings"]] == ["default", "trl"]
    assert summary["not_finished"] == ["notebook"]
    assert summary["prompts_per_s_default_vs_trl"] == 1.0
    assert summary["prompts_per_s_vs_trl"] == {"default": 1.0, "trl": 1.0}
    host = summary["host"]  # measured on this machine, as on the GPU's host
    assert host["python_loop_ms"] > 0 and host["torch_op_us"] > 0 and host["cores"] >= 1
    assert f"{host['torch_op_us']} µs a small torch op" in out.with_suffix(".md").read_text().splitlines()[0]


@pytest.mark.parametrize(
    "cpuinfo, cpu",
    [
        (
            "processor\t: 0\nmodel name\t: AMD EPYC 9654 96-Core Processor\nprocessor\t: 1\nmodel name\t: AMD EPYC 9654 96-Core Processor\n",
            "AMD EPYC 9654 96-Core Processor",
        ),
        ("processor\t: 0\nCPU implementer\t: 0x41\n", "unknown"),
        (None, "unknown"),
    ],
    ids=["x86", "no-model-name", "no-cpuinfo"],
)
def test_the_bench_records_its_hosts_cpu(tmp_path, cpuinfo, cpu):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert bench.host_record(path)["cpu"] == cpu


def test_a_cut_short_fit_is_rebuilt_from_its_log_and_merged_into_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    kept = {"model": "Qwen2.5-7B", "bits": 4, "cap_gib": 23.99, "fits": True, "s_per_step": 1.438}
    kept |= {"peak_gpu_gib": 18.52, "config": "configs/qwen2.5-7b-4090.yaml"}
    (tmp_path / "fit.json").write_text(json.dumps({"rows": [kept]}))
    row = {"name": "fit-14B-4bit-23.99gib", "exit_code": 0, "s_per_step": 5.137, "peak_gpu_gib": 20.63}
    row |= {"fits": True, "startup_s": 147.9, "trainable_params": 137625600}
    log = tmp_path / "fit.log"
    log.write_text("=== fit-14B-4bit-23.99gib: configs/qwen2.5-14b-4090.yaml\n" + json.dumps(row) + "\n")
    argv = ["bench.py", "--fit", "14B:4,3B:16", "--cap-gib", "23.99", "--from-log", str(log)]
    argv += ["--device", "GPU", "--prompt-tokens", "60", "--date", "2026-12-02"]
    monkeypatch.setattr(sys, "argv", argv)
    assert bench.main() == 0
    rows = json.loads((tmp_path / "fit.json").read_text())["rows"]
    assert [(r["model"], r["bits"]) for r in rows] == [("Qwen2.5-7B", 4), ("Qwen2.5-14B", 4)]  # 3B: not in the log
    assert rows[0] == kept
    rebuilt = rows[1]
    assert rebuilt["s_per_step"] == 5.137 and rebuilt["device"] == "GPU" and rebuilt["date"] == "2026-12-02"
    assert rebuilt["config"] == "configs/qwen2.5-14b-4090.yaml" and rebuilt["fits"] is True
    assert abs(rebuilt["forecast_error"]) < 0.15
    assert rebuilt["command"].endswith("--steps 12")
    assert "fits: 5.137 s/step, peak 20.63 GiB" in (tmp_path / "fit.md").read_text()


def test_priming_vllm_where_it_cannot_warns_and_goes_on(tmp_path, capsys):
    bench.prime_vllm(tmp_path)  # no vLLM on the CPU machines, and no model in tmp_path
    assert "warning: could not prime vLLM" in capsys.readouterr().out


@pytest.mark.parametrize(
    "size, bits, cap, config",
    [
        pytest.param("3B", 16, 23.99, "config.yaml", id="3b-24gb-config.yaml"),
        pytest.param("3B", 16, 16, "configs/qwen2.5-3b-12gb.yaml", id="3b-16gb-small-card-config"),
        pytest.param("3B", 4, 12, "configs/qwen2.5-3b-12gb.yaml", id="3b-12gb-small-card-config"),
        pytest.param("7B", 4, 16, "configs/qwen2.5-7b-4090.yaml", id="7b-16gb-falls-back-to-its-4090-config"),
        pytest.param("0.5B", 16, 12, "config.yaml", id="0.5b-no-config-of-its-own"),
    ],
)
def test_a_fit_row_runs_the_config_shipped_for_its_card(size, bits, cap, config):
    path, overrides = bench.fit_config(size, bits, cap)
    assert str(path.relative_to(ROOT)) == config
    assert overrides == [f"model.load_in_4bit={'true' if bits == 4 else 'false'}"]


def test_the_small_card_config_is_forecast_to_fit_12_and_16_gb_cards():
    for cap in (12, 16):
        path, overrides = bench.fit_config("3B", 16, cap)
        result = memory.forecast(load_config(str(path), overrides), bench.shape_of("3B"), cap)
        assert result.fits, (cap, result.peak_gib)
        config_yaml = memory.forecast(load_config("config.yaml", overrides), bench.shape_of("3B"), cap)
        assert not config_yaml.fits  # why the small-card config exists: measured, vLLM stops at start


def test_readme_shows_the_speed_table_bench_wrote():
    # README's Speed table is copied from latest.md: a rerun that is not copied over shows here.
    readme = (ROOT / "README.md").read_text().splitlines()
    rows = [
        line for line in (ROOT / "bench" / "results" / "latest.md").read_text().splitlines() if line.startswith("|")
    ]
    assert rows and [row for row in rows if row not in readme] == []


FIT_ROWS = json.loads((ROOT / "bench" / "results" / "fit.json").read_text())["rows"]
MEASURED_FIT_ROWS = [row for row in FIT_ROWS if row["exit_code"] == 0]
FAILED_FIT_ROWS = [row for row in FIT_ROWS if row["exit_code"] != 0]


def fit_id(row: dict) -> str:
    return f"{row['model']}-{row['bits']}bit-{row['cap_gib']:g}gib"


BENCH_PROMPT_TOKENS = 60  # every fit row's prompts (bench/README.md, Method)


@pytest.mark.parametrize("row", MEASURED_FIT_ROWS, ids=fit_id)
def test_each_measured_fit_row_is_forecast_within_15_percent_by_todays_code(row):
    # Recomputed, not read back: a change to recipe/memory.py that breaks a measured row fails here.
    size = row["model"].removeprefix("Qwen2.5-")
    options = models.options_as_run(row)
    predicted = bench.predicted_peak(ROOT / row["config"], options, size, row["cap_gib"], BENCH_PROMPT_TOKENS)
    assert abs(predicted - row["peak_gpu_gib"]) / row["peak_gpu_gib"] <= 0.15, (predicted, row["peak_gpu_gib"])


@pytest.mark.parametrize("row", FAILED_FIT_ROWS, ids=fit_id)
def test_each_fit_row_that_failed_on_the_gpu_is_forecast_not_to_fit(row):
    # The other half of the forecast's promise: a config it passes must not be one that failed.
    size = row["model"].removeprefix("Qwen2.5-")
    cfg = load_config(str(ROOT / row["config"]), models.options_as_run(row))
    result = memory.forecast(cfg, bench.shape_of(size), row["cap_gib"], prompt_tokens=BENCH_PROMPT_TOKENS)
    assert result.fits is False and result.advice, result.lines()


def test_card_table_is_todays_from_the_results_and_readme_shows_it():
    # Regenerated, not read back: a new fit row, sweep or forecast change that is not written out fails here.
    results = ROOT / "bench" / "results"
    sweep_rows = json.loads((results / "latest.json").read_text())["settings"]
    table = models.card_table(FIT_ROWS, sweep_rows)
    assert (results / "cards.md").read_text() == table
    readme = (ROOT / "README.md").read_text().splitlines()
    assert [line for line in table.splitlines() if line not in readme] == []


@pytest.mark.parametrize(
    "model, configs",
    [
        pytest.param("| Qwen2.5-0.5B | 16 |", "`config.yaml`", id="one-config-for-every-card"),
        # The 16 GB cells ran the 12 GB config: a bare list of two configs left readers guessing which.
        pytest.param(
            "| Qwen2.5-3B | 16 |", "`configs/qwen2.5-3b-12gb.yaml` (12, 16 GB), `config.yaml` (24 GB)", id="3b-by-card"
        ),
    ],
)
def test_card_table_names_the_config_of_each_card(model, configs):
    line = next(line for line in models.card_table(FIT_ROWS, []).splitlines() if line.startswith(model))
    assert line.endswith(f"| {configs} |"), line


@pytest.mark.parametrize("row", MEASURED_FIT_ROWS, ids=fit_id)
def test_card_table_shows_each_fit_row_as_measured(row):
    line = next(
        line
        for line in models.card_table(FIT_ROWS, []).splitlines()
        if line.startswith(f"| {row['model']} | {row['bits']} |")
    )
    cell = line.split(" | ")[2 + list(models.CARDS).index(row["cap_gib"])]
    assert cell.endswith("(measured)") and (not row["fits"] or f"{row['peak_gpu_gib']:.1f} GiB" in cell)


phase_profile = load("phase_profile")


def x(name, ms, ms_long, cat="user_annotation", **args):
    """A Chrome-trace event; the trace counts microseconds."""
    return {"ph": "X", "cat": cat, "name": name, "ts": 1000.0 * ms, "dur": 1000.0 * ms_long, "args": args}


def fake_trace() -> dict:
    """Two profiled steps (times in milliseconds): a generation step and a training-only step."""
    m = phase_profile.MARK
    return {
        "traceEvents": [
            x(m + "window", 0, 1000),
            x(m + "step", 0, 600),  # opens in the same microsecond as the window: the shorter is inside
            x(m + "_prepare_inputs", 10, 290),
            x(m + "sync_weights", 20, 20),
            x(m + "generate", 50, 200),
            x(m + "compute_loss", 320, 100),  # TRL ranges without a phase of their own are transparent
            x(m + "optimizer", 500, 80),
            x(m + "step", 650, 350),
            x(m + "_prepare_inputs", 660, 40),
            x(m + "optimizer", 900, 90),
            x(m + "step", 650, 350, cat="gpu_user_annotation"),  # the GPU-side copy of a range: ignored
            x("cudaGraphLaunch", 55, 2, cat="cuda_runtime", correlation=1),
            x("decode", 60, 180, cat="kernel", correlation=1),
            x("cudaLaunchKernel", 400, 2, cat="cuda_runtime", correlation=2),
            x("backward", 560, 80, cat="kernel", correlation=2),  # launched in training, runs into the optimizer
            x("cudaStreamSynchronize", 450, 5, cat="cuda_runtime"),
            x("cudaDeviceSynchronize", 510, 1, cat="cuda_runtime"),
            x("cudaDeviceSynchronize", 520, 1, cat="cuda_runtime"),
            x("aten::mm", 330, 10, cat="cpu_op"),
        ]
    }


def test_the_profile_splits_each_step_into_phases_by_the_innermost_range():
    table = phase_profile.summarize(fake_trace(), steps=2)
    wall = {phase: row["wall_s_per_step"] for phase, row in table.items()}
    assert wall == {
        "generate": 0.1,
        "sync": 0.01,
        "log_probs": 0.055,
        "train": 0.225,
        "optimizer": 0.085,
        "other": 0.025,
    }
    assert sum(wall.values()) == pytest.approx(0.5)  # the whole window, once


def test_the_profile_counts_gpu_time_kernels_launches_and_syncs_per_phase():
    table = phase_profile.summarize(fake_trace(), steps=2)
    generate, train, optimizer, other = (table[p] for p in ("generate", "train", "optimizer", "other"))
    assert generate["gpu_busy"] == 0.9  # 180 of 200 ms
    assert (generate["kernels_per_step"], generate["launches_per_step"], generate["graph_launches_per_step"]) == (
        0.5,
        0.5,
        0.5,
    )
    # A kernel is counted where it was launched; GPU busy is what ran during the phase's own wall time.
    assert train["kernels_per_step"] == 0.5 and optimizer["kernels_per_step"] == 0
    assert optimizer["gpu_busy"] == round(20 / 170, 3) and other["gpu_busy"] == 0.8
    assert (optimizer["syncs_per_step"], train["syncs_per_step"], generate["syncs_per_step"]) == (1, 0.5, 0)


def test_the_profile_ranks_each_phases_host_hotspots():
    samples = Counter({("generate", "vllm/a.py:step < run"): 3, ("generate", "vllm/b.py:f < g"): 1, ("train", "c"): 2})
    table = phase_profile.summarize(fake_trace(), samples, steps=2, top=1)
    assert table["generate"]["hotspots"] == [{"where": "vllm/a.py:step < run", "share": 0.75}]
    assert table["generate"]["host_samples"] == 4 and table["optimizer"]["hotspots"] == []
    md = phase_profile.markdown(
        "default", {"steps": 2, "first_step": 13, "device": "GPU", "invocation": "i", "phases": table}
    )
    assert "| generate | 0.100 | 90% | 0.5 | 0.5 (0.5) | 0 | vllm/a.py:step < run 75% |" in md


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("decode", "decode"),
        ("void at::native::reduce_kernel<512, 1>(at::native::ReduceOp<float>)", "at::native::reduce_kernel<512, 1>"),
        (
            "void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>(float*, float const*, int)",
            "at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>",
        ),
        ("void f<g(int)>(int (*)(int), float)", "f<g(int)>"),
        ("a)b)", "a)b)"),
        ("(x)", "(x)"),
        ("unbalanced(", "unbalanced("),
    ],
    ids=[
        "plain",
        "template-and-arguments",
        "anonymous-namespace-kept",
        "nested-parentheses",
        "unmatched-close-kept",
        "all-arguments-kept",
        "unmatched-open-kept",
    ],
)
def test_the_profile_names_a_kernel_without_its_signature(raw, shown):
    assert phase_profile.kernel_name(raw) == shown


def test_kernels_that_share_a_long_prefix_are_counted_apart_and_cut_only_in_the_table():
    m, prefix = phase_profile.MARK, "at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor"
    trace = {
        "traceEvents": [
            x(m + "window", 0, 100),
            x(m + "step", 1, 98),
            x(m + "optimizer", 2, 96),
            x(f"void {prefix}_add<float>>(int)", 10, 30, cat="kernel"),
            x(f"void {prefix}OnSelf_add<c10::BFloat16>>(int)", 50, 10, cat="kernel"),
            x("zero_length", 70, 0, cat="kernel"),
        ]
    }
    optimizer = phase_profile.summarize(trace, steps=1, top=3)["optimizer"]
    assert [(k["name"], k["share"]) for k in optimizer["top_kernels"]] == [
        (f"{prefix}_add<float>>", 0.75),
        (f"{prefix}OnSelf_add<c10::BFloat16>>", 0.25),
        ("zero_length", 0.0),
    ]
    md = phase_profile.markdown("x", {"steps": 1, "first_step": 1, "phases": {"optimizer": optimizer}})
    assert f"`{prefix[:59]}…` 75%; `{prefix[:59]}…` 25%" in md


def test_each_launch_is_put_down_to_the_innermost_torch_op_on_its_thread():
    m = phase_profile.MARK

    def on(tid, event):
        return {**event, "tid": tid}

    trace = {
        "traceEvents": [
            x(m + "window", 0, 100),
            x(m + "step", 1, 98),
            on(1, x("aten::linear", 10, 30, cat="cpu_op")),
            on(1, x("aten::mm", 12, 5, cat="cpu_op")),  # ended before the second launch in aten::linear
            on(1, x("cudaLaunchKernel", 13, 1, cat="cuda_runtime")),
            on(1, x("cudaLaunchKernel", 20, 1, cat="cuda_runtime")),
            on(1, x("cuLaunchKernel", 50, 1, cat="cuda_driver")),  # Triton's, from Python: no op around it
            on(2, x("autograd::engine::evaluate_function: MmBackward0", 40, 20, cat="cpu_op")),
            on(2, x("aten::mm", 41, 10, cat="cpu_op")),
            on(2, x("cudaLaunchKernel", 42, 1, cat="cuda_runtime")),
            on(2, x("cudaLaunchKernel", 43, 1, cat="cuda_runtime")),
            on(1, x("cudaLaunchKernel", 44, 1, cat="cuda_runtime")),  # thread 1 has no op open then
            x("gemm", 60, 0.1, cat="kernel"),
        ]
    }
    train = phase_profile.summarize(trace, steps=1, top=3)["train"]
    assert train["launches_per_step"] == 6
    assert train["launched_by"] == [
        {"op": "aten::mm", "share": 0.5},
        {"op": phase_profile.NO_OP, "share": 0.333},
        {"op": "aten::linear", "share": 0.167},
    ]
    md = phase_profile.markdown("x", {"steps": 1, "first_step": 1, "phases": {"train": train}})
    assert "| train | 0.000 | `gemm` 100% | `aten::mm` 50%; `no torch op` 33%; `aten::linear` 17% |" in md


def test_a_phase_whose_kernels_all_took_no_time_has_no_shares():
    m = phase_profile.MARK
    trace = {"traceEvents": [x(m + "window", 0, 10), x(m + "step", 1, 8), x("k", 2, 0, cat="kernel")]}
    train = phase_profile.summarize(trace, steps=1)["train"]
    assert train["kernel_s_per_step"] == 0 and train["top_kernels"] == [{"name": "k", "s_per_step": 0.0, "share": 0.0}]


def test_the_profile_ranks_each_phases_gpu_kernels_by_their_own_time():
    trace = fake_trace()
    trace["traceEvents"] += [
        x("cudaLaunchKernel", 60, 1, cat="cuda_runtime", correlation=3),
        x("void sampler<1>(float*)", 241, 20, cat="kernel", correlation=3),  # runs past generate's end
    ]
    table = phase_profile.summarize(trace, steps=2, top=1)
    assert table["generate"]["kernel_s_per_step"] == 0.1  # (180 + 20) ms over 2 steps
    assert table["generate"]["top_kernels"] == [{"name": "decode", "s_per_step": 0.09, "share": 0.9}]
    assert table["train"]["top_kernels"] == [{"name": "backward", "s_per_step": 0.04, "share": 1.0}]
    assert table["optimizer"]["top_kernels"] == [] and table["optimizer"]["kernel_s_per_step"] == 0
    md = phase_profile.markdown("default", {"steps": 2, "first_step": 13, "phases": table})
    assert "| generate | 0.100 | `decode` 90% |" in md and "| optimizer |" not in md.split("kernel s")[1]


def test_the_profiler_follows_the_trainers_callbacks_and_trls_ranges_on_a_cpu(tmp_path):
    import torch

    out = tmp_path / "phases.json"
    profiler = phase_profile.PhaseProfiler(out, first_step=1, steps=2, meta={"name": "cpu"})
    callback = profiler.callback()
    state, a = type("State", (), {"global_step": 0})(), torch.randn(256, 256)
    for _ in range(4):
        callback.on_step_begin(None, state, None)
        profiler.enter("_prepare_inputs")
        profiler.enter("generate")
        for _ in range(20):
            a = torch.tanh(a @ a)
        profiler.exit("generate")
        profiler.exit("_prepare_inputs")
        (a @ a).sum()
        callback.on_pre_optimizer_step(None, state, None)
        a = a * 0.5
        callback.on_optimizer_step(None, state, None)
        state.global_step += 1
        callback.on_step_end(None, state, None)
    got = json.loads(out.read_text())
    assert (got["name"], got["first_step"], got["steps"]) == ("cpu", 2, 2)
    assert {"generate", "log_probs", "train", "optimizer"} <= set(got["phases"])
    assert got["phases"]["generate"]["wall_s_per_step"] > got["phases"]["optimizer"]["wall_s_per_step"]
    assert not profiler.active and (tmp_path / "profile-started").exists()
    assert not list(tmp_path.glob("*.trace.json"))  # the trace is read and dropped: only the table stays


def test_a_profiled_row_is_measured_on_its_first_steps_only(tmp_path):
    # The profiled cycle after the measured steps is slow (the profiler); it must not reach the figures.
    rows = [{"step": s, "time": s * 1.0 + (100.0 if s > 12 else 0.0), "step_time": 1.0} for s in range(1, 17)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    timers = [{"name": "generate", "step": s, "seconds": 50.0 if s >= 12 else 0.5} for s in range(16)]
    (tmp_path / "profile.jsonl").write_text("".join(json.dumps(t) + "\n" for t in timers))
    cfg = load_config(str(ROOT / "config.yaml"), ["training.steps_per_generation=1"])
    args = type("Args", (), {"warmup": 4, "steps": 12})()
    got = bench.measure("", tmp_path, cfg, args)
    assert got["s_per_step"] == 1.0 and got["profile_s_per_step"]["generate"] == 0.5


def test_a_sweep_rebuilt_from_its_log_keeps_its_invocation_and_writes_its_profiles(tmp_path, monkeypatch):
    # 2026-12-06: the machine lost the snapshot's configs after the last row ran, before it was annotated.
    profiled = {
        "first_step": 13,
        "steps": 4,
        "window_s": 20.0,
        "phases": phase_profile.summarize(fake_trace(), steps=2),
    }
    row = {"name": "default", "description": "config.yaml as shipped", "config": "config.yaml", "options": []}
    row |= {"exit_code": 0, "backend": "unsloth", "s_per_step": 0.7, "prompts_per_s": 1.429, "peak_gpu_gib": 15.69}
    row |= {"wall_s": 95.2, "startup_s": 51.1, "fits": True}
    row |= {
        "profile": profiled,
        "phases_s_per_step": {"generate": 0.3, "sync_weights": 0, "log_probs": 0.1, "train": 0.3},
    }
    log = tmp_path / "sweep.log"
    host = {"cpu": "AMD EPYC 9654", "cores": 16, "python_loop_ms": 41.2, "torch_op_us": 1.9}
    log.write_text(f"host: {json.dumps(host)}\n=== default: config.yaml \n" + json.dumps(row) + "\n")
    out = tmp_path / "latest.json"
    argv = ["bench.py", "--from-log", str(log), "--device", "GPU", "--prompt-tokens", "60", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--invocation", "20261206-152228-52e217"])
    assert bench.main() == 0
    summary = json.loads(out.read_text())
    default = summary["settings"][0]
    assert default["invocation"] == "20261206-152228-52e217" and default["profile"] == "profile-default.json"
    assert summary["host"] == host and out.with_suffix(".md").read_text().startswith("Device: GPU on AMD EPYC 9654 (")
    written = json.loads((tmp_path / "profile-default.json").read_text())
    assert written["invocation"] == "20261206-152228-52e217" and written["phases"]["generate"]["gpu_busy"] == 0.9
    assert "| generate |" in (tmp_path / "profile-default.md").read_text()
