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
# A failing step, when a test asks for one: its exit code must reach driver.log.
[ -n "${FAIL_ON:-}" ] && [[ "$*" == *"$FAIL_ON"* ]] && exit 3
exit 0
"""


def sitting(tmp_path: Path, **env: str) -> tuple[list[str], list[str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"python": FAKE_PYTHON, "nvidia-smi": "#!/usr/bin/env bash\necho fake-gpu\n"}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    res, calls = tmp_path / "res", tmp_path / "calls.txt"
    run_env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TESTS_", "SWEEP", "FIT", "EVAL_FIT", "LEARNING", "FAIL_ON"))
        },
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RES": str(res),
        "CALLS": str(calls),
        **env,
    }
    subprocess.run(["bash", str(SCRIPT)], env=run_env, check=True, capture_output=True, timeout=60)
    steps = [line.split()[2] for line in (res / "driver.log").read_text().splitlines() if " start " in line]
    return steps, (calls.read_text().splitlines() if calls.exists() else []), res


def test_a_sitting_runs_the_sweep_then_each_fit_item_then_the_test_lanes(tmp_path):
    # Timed pieces first: a sitting cut short keeps what it is for.
    steps, calls, res = sitting(
        tmp_path, SWEEP="default,trl", FIT="7B:4@16 3B:16@12,16", TESTS_A="saves", LANE_GAP_S="0"
    )
    assert steps == ["sweep", "fit-7B-4-16", "fit-3B-16-12-16", "assets", "tests-a"]
    args = [call.split(" ", 1)[1] for call in calls]
    assert args == [
        "bench/bench.py --settings default,trl",
        "bench/bench.py --fit 7B:4 --cap-gib 16",
        "bench/bench.py --fit 3B:16 --cap-gib 12,16",
        "offline.py smollm2 --prime-steps 0",  # priming serves the learning run only
        "-m pytest -m gpu -q -p no:cacheprovider -rA tests/test_gpu.py -k saves",
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
    ],
)
def test_a_sitting_runs_only_what_its_variables_ask_for(tmp_path, env, expected):
    assert sitting(tmp_path, **env)[0] == expected


def test_the_learning_run_primes_the_format_and_takes_the_overrides_to_check(tmp_path):
    steps, calls, _ = sitting(tmp_path, LEARNING="1", LEARNING_SET="training.steps_per_generation=8", LANE_GAP_S="0")
    assert steps == ["assets", "learning"]
    args = [call.split(" ", 1)[1] for call in calls]
    assert args[0] == "offline.py smollm2 --prime-steps 150"
    assert args[1] == "train_grpo.py --config configs/smollm2-learn.yaml --set training.steps_per_generation=8"
    # Both evaluations, GSM-Symbolic from the file where reasoning-gym does not import, then the summary.
    assert [a.split()[0] for a in args[2:]] == ["eval_grpo.py", "eval_grpo.py", "bench/learning.py"]
    assert "--dataset assets/gsm-symbolic/test.jsonl" in args[3]


def test_driver_log_records_each_steps_own_exit_code(tmp_path):
    # Regression: "$(date +%T) ... rc=$?" logged date's status, so a failed test lane read rc=0.
    *_, res = sitting(tmp_path, SWEEP="default", FIT="7B:4@16", FAIL_ON="--settings")
    ends = [line.split(" ", 2)[2] for line in (res / "driver.log").read_text().splitlines() if " end " in line]
    assert ends == ["sweep rc=3", "fit-7B-4-16 rc=0"]


@pytest.mark.parametrize(
    "driver_log, limit_s, most_s",
    [
        pytest.param("12:00:00 start sweep\n12:09:00 all done\n", 30, 10, id="stops-when-the-driver-is-done"),
        pytest.param("12:00:00 start sweep\n", 2, 10, id="stops-at-its-time-limit"),
    ],
)
def test_watch_leaves_a_whole_snapshot_and_returns(tmp_path, driver_log, limit_s, most_s):
    # A device call that runs `watch` holds the machine; what it leaves in $OUT outlives the machine.
    import tarfile
    import time

    res, out = tmp_path / "res", tmp_path / "out"
    res.mkdir()
    out.mkdir()
    (res / "driver.log").write_text(driver_log)
    env = {**os.environ, "RES": str(res), "WATCH_EVERY_S": "0.2"}
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), "watch", str(out), str(limit_s)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and time.monotonic() - started < most_s
    assert "start sweep" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["res.tgz"]  # no half-written file beside it
    with tarfile.open(out / "res.tgz") as tar:
        assert "res/driver.log" in tar.getnames()


def test_watch_on_a_fresh_machine_says_so_at_once(tmp_path):
    # Regression (2026-12-03c): a follow-up watch call landed on a fresh machine and slept 560 s of
    # device time over a driver that no longer existed.
    env = {**os.environ, "RES": str(tmp_path / "res"), "WATCH_EVERY_S": "0.2"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "watch", str(tmp_path), "30"], env=env, capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 3 and "fresh" in done.stdout
    assert not (tmp_path / "res.tgz").exists()
