"""bench/gpu_session.sh plans a GPU sitting: which steps run, in which order, with which arguments.

Run here with a stand-in `python` and `nvidia-smi` that only record how they were called.
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_session.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
# An import probe (python -c ...) fails, as reasoning-gym's would on the GPU machine.
[ "$1" = -c ] && exit 1
echo "BENCH_RESULTS=$BENCH_RESULTS $*" >> "$CALLS"
echo "$PWD" >> "$CALLS.cwd"
# A failing step, when a test asks for one: its exit code must reach driver.log.
[ -n "${FAIL_ON:-}" ] && [[ "$*" == *"$FAIL_ON"* ]] && exit 3
# A step that hangs, when a test asks for one.
[ -n "${HANG_ON:-}" ] && [[ "$*" == *"$HANG_ON"* ]] && sleep 30
exit 0
"""


FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
# The memory in use, when a test gives it (one reading per line of $GPU_USED, the last one repeated).
if [[ "$*" == *memory.used* ]] && [ -n "${GPU_USED:-}" ]; then
  n=$(cat "$GPU_USED.n" 2>/dev/null || echo 0); echo $((n + 1)) > "$GPU_USED.n"
  sed -n "$((n + 1))p" "$GPU_USED" | grep . || tail -1 "$GPU_USED"
  exit 0
fi
echo fake-gpu
"""


# What a sitting reads from the environment: none may leak in from the shell that runs the tests.
SITTING_VARIABLES = (
    "TESTS_",
    "SWEEP",
    "PROFILE",
    "FIT",
    "EVAL_FIT",
    "LEARN",
    "FAIL_ON",
    "HANG_ON",
    "GPU_",
    "TRAIN_STEP",
    "FOLD_KERNEL",
    "PRIME",
    "BASELINE",
    "FRESH_",
)


def symbolic_step() -> list[str]:
    """GSM-Symbolic's questions are written only where the tree has no file of them."""
    return [] if (ROOT / "assets" / "gsm-symbolic" / "test.jsonl").exists() else ["gsm-symbolic"]


def sitting(tmp_path: Path, **env: str) -> tuple[list[str], list[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"python": FAKE_PYTHON, "nvidia-smi": FAKE_NVIDIA_SMI}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    res, calls = tmp_path / "res", tmp_path / "calls.txt"
    run_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(SITTING_VARIABLES)},
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RES": str(res),
        "CALLS": str(calls),
        "GPU_TEST_TMP": str(tmp_path / "gpu-tests"),
        **env,
    }
    subprocess.run(["bash", str(SCRIPT)], env=run_env, check=True, capture_output=True, timeout=60)
    steps = [line.split()[2] for line in (res / "driver.log").read_text().splitlines() if " start " in line]
    return steps, (calls.read_text().splitlines() if calls.exists() else []), res


def test_primed_rows_start_first_and_solo_tests_run_last(tmp_path):
    # The primed rows meet the machine's empty caches; the sweep's rows, after them, warm ones.
    steps, calls, res = sitting(tmp_path, PRIME="default,trl", SWEEP="default,trl", TESTS_SOLO="graphed_step")
    smollm2 = [] if (ROOT / "assets" / "smollm2" / "model" / "config.json").exists() else ["assets"]
    assert steps == ["prime", "sweep", *smollm2, "tests-solo"]
    args = [call.split(" ", 1)[1] for call in calls]
    assert args[0] == f"bench/bench.py --settings default,trl --steps 3 --warmup 1 --out {res}/results/prime.json"
    assert args[1] == "bench/bench.py --settings default,trl"
    assert args[-1] == (
        f"-m pytest -m gpu -q -p no:cacheprovider -rA --basetemp {tmp_path}/gpu-tests/solo tests/test_gpu.py"
        " -k graphed_step"
    )


def test_a_baseline_trees_rows_run_right_after_the_sweep_on_this_trees_model(tmp_path):
    # A branch timed against main on the same warm machine: main's tree copied beside the branch's.
    baseline = tmp_path / "main"
    (baseline / "bench" / "results").mkdir(parents=True)
    for name in ("fit.json", "fit.md", "latest.json", "latest.md"):
        (baseline / "bench" / "results" / name).write_text(f"main's {name}")
    steps, calls, res = sitting(tmp_path, SWEEP="default,trl", BASELINE=str(baseline), FIT="7B:4@16")
    assert steps == ["sweep", "baseline", "fit-7B-4-16"]
    assert calls[1] == f"BENCH_RESULTS={res / 'baseline'} bench/bench.py --settings default"
    cwd = (tmp_path / "calls.txt.cwd").read_text().splitlines()
    assert cwd[1] == str(baseline) and cwd[0] == cwd[2] == str(ROOT)
    assert (res / "baseline" / "latest.json").read_text() == "main's latest.json"  # its own tables, merged into
    for path in ("bench/.work/qwen2.5-3b-random", "bench/.work/prompts-3b.jsonl"):  # the 3B built once
        built = ROOT / path
        assert not built.exists() or (baseline / path).resolve() == built.resolve()


def test_a_sitting_runs_the_sweep_then_each_fit_item_then_the_test_lanes(tmp_path):
    # Timed pieces first: a sitting cut short keeps what it is for.
    steps, calls, res = sitting(
        tmp_path, SWEEP="default,trl", PROFILE="trl", FIT="7B:4@16 3B:16@12,16", TESTS_A="saves", LANE_GAP_S="0"
    )
    assert steps == ["sweep", "fit-7B-4-16", "fit-3B-16-12-16", "assets", "tests-a"]
    args = [call.split(" ", 1)[1] for call in calls]
    assert args == [
        "bench/bench.py --settings default,trl --profile trl",
        "bench/bench.py --fit 7B:4 --cap-gib 16",
        "bench/bench.py --fit 3B:16 --cap-gib 12,16",
        "offline.py smollm2 --prime-steps 150",  # unprimed, no reward varies: nothing for a test to train on
        f"-m pytest -m gpu -q -p no:cacheprovider -rA --basetemp {tmp_path}/gpu-tests/a tests/test_gpu.py -k saves",
    ]
    # Results go where the next device call's copy of the tracked tree cannot overwrite them,
    # seeded with the committed tables the bench merges into.
    assert all(call.startswith(f"BENCH_RESULTS={res / 'results'} ") for call in calls)
    assert (res / "results" / "fit.json").read_text() == (ROOT / "bench" / "results" / "fit.json").read_text()
    assert (res / "driver.log").read_text().rstrip().endswith("all done")


@pytest.mark.parametrize(
    "env, expected",
    [
        pytest.param({}, [], id="nothing-asked-nothing-run"),
        pytest.param({"SWEEP": "default"}, ["sweep"], id="no-lane-no-assets"),
        pytest.param({"FIT": "9B:4@16", "EVAL_FIT": "9B"}, ["fit-9B-4-16"], id="no-adapter-no-eval"),
        pytest.param(
            {"TRAIN_STEP": "1", "SWEEP": "default"}, ["train-step", "sweep"], id="train-step-before-the-sweep"
        ),
        pytest.param(
            {"FOLD_KERNEL": "1", "SWEEP": "default", "FIT": "7B:4@16"},
            ["sweep", "fit-7B-4-16", "fold-kernel"],
            id="fold-kernel-after-the-fits",
        ),
    ],
)
def test_a_sitting_runs_only_what_its_variables_ask_for(tmp_path, env, expected):
    assert sitting(tmp_path, **env)[0] == expected


@pytest.mark.parametrize(
    "env, sweep",
    [
        pytest.param({"FRESH_CACHES": "1"}, "--settings default,trl --fresh-caches", id="fresh"),
        pytest.param(
            {"FRESH_CACHES": "1", "PROFILE": "trl"},
            "--settings default,trl --profile trl --fresh-caches",
            id="fresh-profiled",
        ),
        pytest.param({"FRESH_CACHES": "0"}, "--settings default,trl", id="off"),
        pytest.param({}, "--settings default,trl", id="unset"),
    ],
)
def test_fresh_caches_reach_the_sweeps_command_only_when_asked(tmp_path, env, sweep):
    calls = sitting(tmp_path, SWEEP="default,trl", **env)[1]
    assert [call.split(" ", 1)[1] for call in calls] == [f"bench/bench.py {sweep}"]


def test_the_learning_check_primes_the_format_and_runs_the_arms_beside_a_test_lane(tmp_path):
    steps, calls, res = sitting(
        tmp_path,
        LEARNING="1",
        LEARN_ARMS="default,fast",
        LEARN_STEPS="200",  # divides by the fast arm's 4 prompts a step
        TESTS_A="saves",
        LANE_GAP_S="0",
        COLLECT_EVERY_S="0.2",
    )
    symbolic = symbolic_step()
    assert steps[: 1 + len(symbolic)] == ["assets", *symbolic] and sorted(steps[1 + len(symbolic) :]) == [
        "learning",
        "tests-a",
    ]
    args = [call.split(" ", 1)[1] for call in calls]
    assert args[0] == "offline.py smollm2 --prime-steps 150"
    assert args[1 : 1 + len(symbolic)] == [f"offline.py {s}" for s in symbolic]
    learn = next(a for a in args if a.startswith("bench/learning.py"))
    assert learn == "bench/learning.py --arms default,fast --seeds 3 --steps 200 --deadline 900 --vllm-gib 6"
    assert (res / "driver.log").read_text().rstrip().endswith("all done")


def test_the_sitting_copies_each_learning_runs_records_into_res(tmp_path, monkeypatch):
    run = ROOT / "outputs" / "learn" / "default-s3407"
    created = not run.exists()
    (run / "eval").mkdir(parents=True, exist_ok=True)
    try:
        (run / "metrics.jsonl").write_text("{}\n")
        (run / "eval" / "summary.json").write_text("{}")
        *_, res = sitting(tmp_path, LEARNING="1", LANE_GAP_S="0", COLLECT_EVERY_S="0.2")
        copied = res / "learn" / "default-s3407"
        assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file()) == [
            "eval/summary.json",
            "metrics.jsonl",
        ]
    finally:
        if created:
            import shutil

            shutil.rmtree(run)


def test_the_gpu_tests_run_logs_come_back_in_res_and_nothing_else_of_theirs(tmp_path):
    # Regression (gpu-2026-12-07m): two GPU tests failed on a log assertion, and the lane's output, cut short,
    # never said which; their runs' logs stayed in pytest's temporary folder on the machine that was handed back.
    run = tmp_path / "gpu-tests" / "solo" / "test_graphed_step_trains_on_gpu0"
    (run / "graphed" / "adapter").mkdir(parents=True)
    (run / "graphed.log").write_text("training step: recipe/graphed_step.py\n")
    (run / "graphed" / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (run / "huge.log").write_bytes(b"x" * (3 << 20))  # a runaway log stays behind: res.tgz must come back
    *_, res = sitting(tmp_path, TESTS_SOLO="graphed_step")
    copied = res / "test-logs"
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file()) == [
        "solo/test_graphed_step_trains_on_gpu0/graphed.log"
    ]
    assert (copied / "solo/test_graphed_step_trains_on_gpu0/graphed.log").read_text().startswith("training step")


def test_driver_log_records_each_steps_own_exit_code(tmp_path):
    # Regression: "$(date +%T) ... rc=$?" logged date's status, so a failed test lane read rc=0.
    *_, res = sitting(tmp_path, SWEEP="default", FIT="7B:4@16", FAIL_ON="--settings")
    ends = [line.split(" ", 2)[2] for line in (res / "driver.log").read_text().splitlines() if " end " in line]
    assert ends == ["sweep rc=3", "fit-7B-4-16 rc=0"]


def test_learn_first_runs_the_learning_check_while_the_3b_is_built_then_the_timed_sweep(tmp_path):
    steps, calls, res = sitting(
        tmp_path, LEARN_FIRST="1", LEARNING="1", SWEEP="default,trl", LANE_GAP_S="0", COLLECT_EVERY_S="0.2"
    )
    symbolic = symbolic_step()
    assert steps[: 1 + len(symbolic)] == ["assets", *symbolic]
    assert sorted(steps[1 + len(symbolic) : -1]) == ["build-3b", "learning"] and steps[-1] == "sweep"
    args = [call.split(" ", 1)[1] for call in calls]
    assert "bench/bench.py --prepare 3B" in args
    assert args[-1] == "bench/bench.py --settings default,trl"
    assert (res / "driver.log").read_text().rstrip().endswith("all done")


def test_a_hung_test_lane_is_stopped_and_the_sweep_still_runs(tmp_path):
    steps, calls, res = sitting(
        tmp_path,
        LEARN_FIRST="1",
        TESTS_A="graphed",
        TESTS_TIMEOUT_S="2",
        HANG_ON="-m pytest",
        SWEEP="default",
        LANE_GAP_S="0",
        COLLECT_EVERY_S="0.2",
    )
    ends = [line.split(" ", 2)[2] for line in (res / "driver.log").read_text().splitlines() if " end " in line]
    assert "tests-a rc=124" in ends  # timeout's code: stopped, not passed
    assert steps[-1] == "sweep" and calls[-1].endswith("bench/bench.py --settings default")


@pytest.mark.parametrize(
    "readings, idle_s, warned",
    [
        # Bash's SECONDS counts whole wall-clock seconds: the wait outlasts the 4 s of readings by a margin.
        pytest.param("9000\n9000\n300\n", "9", False, id="waits-until-it-frees"),
        pytest.param("9000\n", "0", True, id="still-held-after-the-wait"),
    ],
)
def test_the_timed_rows_wait_for_an_idle_gpu(tmp_path, readings, idle_s, warned):
    (tmp_path / "used.txt").write_text(readings)
    steps, _, res = sitting(tmp_path, SWEEP="default", GPU_USED=str(tmp_path / "used.txt"), GPU_IDLE_S=idle_s)
    assert steps == ["sweep"]
    log = (res / "driver.log").read_text()
    assert ("MiB of the GPU still in use" in log) is warned
    if not warned:
        assert int((tmp_path / "used.txt.n").read_text()) == 3  # it read until the GPU was free
