"""Nothing lost, whatever the moment: kills at exact moments, a full disk, two processes, an incompatible resume.

Each row is one failure a hostile pass found (issue 30). A kill is an exception no code of the recipe
catches, raised at the exact moment through the callbacks seam or a patched writer: the files are left
as a SIGKILL there would leave them. Every kill and disk-full row ends by checking what the user keeps:
a complete checkpoint, and for the kills a resume that ends with the uninterrupted run's weights.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import plots
import train_grpo
from conftest import ROOT, TRAINED_RUN, TRAINED_STEPS, files, lora, same_weights, tiny_cli
from conftest import train_like_trained_run as tiny
from recipe import callbacks, jsonl, runs
from recipe.config import config_to_yaml, load_config
from recipe.jsonl import append_jsonl, read_jsonl, trim_jsonl


class Killed(BaseException):
    """The process dies here: nothing of the recipe catches a BaseException, so no later line runs."""


def same_adapter(a: Path, b: Path) -> bool:
    return same_weights(lora(a), lora(b))


def steps_logged(out: Path) -> list[int]:
    return [row["step"] for row in read_jsonl(out / "metrics.jsonl") if "reward" in row]


def stopped_at_2(trained_run: Path, dst: Path) -> Path:
    """The shared run as a kill after step 3's logs leaves it: checkpoint-2, metrics of steps 1-4, no adapter."""
    shutil.copytree(trained_run, dst, ignore=shutil.ignore_patterns("checkpoint-4", "adapter", "plots"))
    return dst


def errors_of(err: str) -> list[str]:
    assert "Traceback" not in err, err[-2000:]
    return [line for line in err.split("\n") if line.startswith("error: ")]


def when(folder_name: str, action):
    """A replacement for a writer(path, ...) that runs ``action`` when the path is in ``folder_name``, else writes."""

    def arm(original):
        def writer(*args, **kwargs):
            paths = [str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, Path))]
            if any(f"/{folder_name}" in path for path in paths):
                action()
            return original(*args, **kwargs)

        return writer

    return arm


def kill():
    raise Killed


def disk_full():
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_disk_full():
    # What torch.save raises when its write fails: the errno is lost inside its zip writer.
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def patch_marker(m, folder_name, action):
    m.setattr(runs, "write_marker", when(folder_name, action)(runs.write_marker))


def patch_torch_save(m, folder_name, action):
    import torch

    m.setattr(torch, "save", when(folder_name, action)(torch.save))


def patch_trainer_state(m, folder_name, action):
    from transformers.trainer_callback import TrainerState

    m.setattr(TrainerState, "save_to_json", when(folder_name, action)(TrainerState.save_to_json))


def patch_rotation(m, folder_name, action):
    rotate = runs.rotate_checkpoints

    def rotate_then(out, keep):
        if (out / folder_name / runs.MARKER).exists():
            action()
        rotate(out, keep)

    m.setattr(runs, "rotate_checkpoints", rotate_then)


def patch_metrics_append(m, step, action):
    """The append of step ``step``'s metrics line runs ``action`` after writing half of it."""
    append = callbacks.append_jsonl

    def append_half(rows, path):
        rows = list(rows)
        if Path(path).name == "metrics.jsonl" and rows[0].get("step") == step and "reward" in rows[0]:
            text = jsonl.jsonl_text(rows)
            with open(path, "a") as f:
                f.write(text[: len(text) // 2])
            action()
        append(rows, path)

    m.setattr(callbacks, "append_jsonl", append_half)


class OnSave:
    """The callbacks seam: ``action`` in on_save of ``step``, once the checkpoint is saved and marked."""

    def __new__(cls, step, action):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == step:
                    action()

        return Callback()


# (id, extra CLI words, arm(monkeypatch) -> extra callbacks, the step --resume continues from)
KILLS = [
    # The first case: save_total_limit reached, the old checkpoint rotated away before the new one's
    # marker, and --resume started from step 0.
    (
        "rotated-away-before-the-new-marker",
        ("--set", "output.save_total_limit=1"),
        lambda m: patch_marker(m, "checkpoint-4", kill) or [],
        2,
    ),
    (
        "while-writing-the-optimizer",
        ("--set", "output.save_total_limit=1"),
        lambda m: patch_torch_save(m, "checkpoint-4", kill) or [],
        2,
    ),
    (
        "after-the-marker-before-rotation",
        ("--set", "output.save_total_limit=1"),
        lambda m: patch_rotation(m, "checkpoint-4", kill) or [],
        4,
    ),
    ("in-on-save", (), lambda m: [OnSave(2, kill)], 2),
    # The usual result of a kill: the last line of metrics.jsonl cut in half, which made --resume crash.
    ("half-a-metrics-line", (), lambda m: patch_metrics_append(m, 3, kill) or [], 2),
]


@pytest.mark.parametrize("extra, arm, resumed_at", [pytest.param(*row[1:], id=row[0]) for row in KILLS])
def test_a_kill_at_any_moment_resumes_from_a_complete_checkpoint_to_the_same_weights(
    trained_run, tiny_assets, tmp_path, monkeypatch, capsys, extra, arm, resumed_at
):
    out = tmp_path / "run"
    with monkeypatch.context() as m, pytest.raises(Killed):
        tiny(tiny_assets, out, *extra, callbacks=arm(m))
    kept = runs.latest_complete(out)[0]
    assert kept is not None and runs.saved_step(kept) == resumed_at
    capsys.readouterr()
    assert tiny(tiny_assets, out, *extra, "--resume") == 0
    said = capsys.readouterr().out
    assert f"resuming from {kept} (step {resumed_at})" in said or f"{kept} is at step {resumed_at}" in said
    assert same_adapter(out / "adapter", trained_run / "adapter")
    if resumed_at < TRAINED_STEPS:
        assert steps_logged(out) == list(range(1, TRAINED_STEPS + 1)), "each step logged once"


def dying_open(name: str):
    """open() for recipe.jsonl whose writes to a file named ``name`` (or its partial) stop halfway, killed."""

    class Dying:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise Killed

        def __getattr__(self, attr):
            return getattr(self.f, attr)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()
            return False

    def opener(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller's with-block closes it
        return Dying(f) if "w" in mode and name in Path(path).name else f

    return opener


def test_a_kill_while_resume_trims_the_logs_keeps_them_whole(trained_run, tiny_assets, tmp_path, monkeypatch):
    out = stopped_at_2(trained_run, tmp_path / "run")
    before = (out / "metrics.jsonl").read_bytes()
    with monkeypatch.context() as m, pytest.raises(Killed):
        # Regression: the trim rewrote metrics.jsonl in place, and a kill there left it empty.
        m.setattr(jsonl, "open", dying_open("metrics.jsonl"), raising=False)
        tiny(tiny_assets, out, "--resume")
    assert (out / "metrics.jsonl").read_bytes() == before
    assert tiny(tiny_assets, out, "--resume") == 0
    assert steps_logged(out) == list(range(1, TRAINED_STEPS + 1))
    assert same_adapter(out / "adapter", trained_run / "adapter")


@pytest.mark.parametrize(
    "cut",
    [lambda n, last: n - last // 2, lambda n, last: n - last, lambda n, last: 5],
    ids=["mid-last-line", "at-a-newline", "mid-first-line"],
)
def test_resume_with_metrics_cut_anywhere(trained_run, tiny_assets, tmp_path, cut):
    out = stopped_at_2(trained_run, tmp_path / "run")
    data = (out / "metrics.jsonl").read_bytes()
    last = len(data.rstrip(b"\n").rsplit(b"\n", 1)[-1]) + 1
    (out / "metrics.jsonl").write_bytes(data[: cut(len(data), last)])
    assert tiny(tiny_assets, out, "--resume") == 0
    assert steps_logged(out) == [step for step in range(1, TRAINED_STEPS + 1) if step > 2 or cut(len(data), last) > 5]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_metrics_cut_at_any_byte_resume_and_log_each_step_once(trained_run, tmp_path, data):
    """What --resume does with metrics.jsonl (trim to the checkpoint, append the steps trained again), at any cut."""
    whole = (trained_run / "metrics.jsonl").read_bytes()
    cut = data.draw(st.integers(0, len(whole)), label="cut")
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(whole[:cut])
    # A record survives when the cut leaves all of it, its closing brace included.
    ends = [i for i, byte in enumerate(whole) if byte == ord("\n")]
    starts = [0, *(end + 1 for end in ends[:-1])]
    complete = [json.loads(whole[a:b]) for a, b in zip(starts, ends) if b <= cut]
    trim_jsonl(path, 2)
    assert read_jsonl(path) == [row for row in complete if row["step"] <= 2], "complete lines kept, the cut one dropped"
    append_jsonl([row for row in read_jsonl(trained_run / "metrics.jsonl") if row["step"] > 2], path)
    steps = [row["step"] for row in read_jsonl(path) if "reward" in row]
    assert steps == sorted(set(steps)) and set(range(3, TRAINED_STEPS + 1)) <= set(steps)
    assert [row["step"] for row in plots.read_steps(path)] == sorted(set(steps))


def out_of(folder_name: str, patch, action) -> callable:
    return lambda m: patch(m, folder_name, action) or []


# (id, arm(monkeypatch) -> callbacks, the folder the one line names, its fix, the complete checkpoint kept or None)
DISK_FULL = [
    # The case: torch's own error, not the disk error, surfaced as a traceback.
    (
        "torch-save-of-a-checkpoint",
        out_of("checkpoint-4", patch_torch_save, torch_disk_full),
        "checkpoint-4",
        "resume",
        2,
    ),
    (
        "trainer-state-of-a-checkpoint",
        out_of("checkpoint-4", patch_trainer_state, disk_full),
        "checkpoint-4",
        "resume",
        2,
    ),
    ("marker-of-a-checkpoint", out_of("checkpoint-4", patch_marker, disk_full), "checkpoint-4", "resume", 2),
    ("the-final-adapter", out_of("adapter.partial", patch_marker, disk_full), "adapter", "rerun with --resume", 4),
    ("metrics-log", lambda m: patch_metrics_append(m, 3, disk_full) or [], "", "resume", 2),
    (
        "config-yaml",
        lambda m: m.setattr(train_grpo, "write_atomic", lambda path, text: disk_full()) or [],
        "config.yaml",
        "choose another output.dir",
        None,
    ),
]


@pytest.mark.parametrize("arm, names, fix, kept", [pytest.param(*row[1:], id=row[0]) for row in DISK_FULL])
def test_a_full_disk_anywhere_in_saving_is_one_line_and_the_earlier_checkpoint_stays(
    tiny_assets, tmp_path, monkeypatch, capsys, arm, names, fix, kept
):
    out = tmp_path / "run"
    monkeypatch.setattr(runs, "free_space", lambda path: 0)
    assert tiny(tiny_assets, out, callbacks=arm(monkeypatch)) == 2
    [error] = errors_of(capsys.readouterr().err)
    target = out / names if names else out
    assert error.startswith(f"error: could not write {target}: the disk is full (0 bytes free"), error
    assert fix in error
    if kept is None:
        return
    assert runs.latest_complete(out)[0] == out / f"checkpoint-{kept}"
    assert not (out / "adapter.partial").exists(), "the half-written folder gives its space back"
    if names.startswith("checkpoint-"):
        assert not (out / names).exists()


def test_after_a_full_disk_the_earlier_checkpoint_resumes_to_the_same_weights(
    trained_run, tiny_assets, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        patch_torch_save(m, "checkpoint-4", torch_disk_full)
        assert tiny(tiny_assets, out) == 2
    assert tiny(tiny_assets, out, "--resume") == 0
    assert same_adapter(out / "adapter", trained_run / "adapter")


HOLD = "import sys, time; from pathlib import Path; from recipe import runs; runs.lock_output_dir(Path(sys.argv[1])); print('held', flush=True); time.sleep(300)"


@pytest.fixture
def holder():
    """hold(folder): a separate process that holds folder's run lock until killed; returns it."""
    started = []

    def hold(folder: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


# (id, the folder a second run starts on, its extra CLI words)
SECOND_RUN = [
    # Two runs started together on a new folder both trained and logged every step twice.
    ("a-second-run-on-a-new-folder", lambda trained_run, out: out, ()),
    # --resume while the first run still trained crashed when its checkpoint was rotated away.
    ("resume-while-the-first-still-trains", stopped_at_2, ("--resume",)),
]


@pytest.mark.parametrize("folder, extra", [pytest.param(*row[1:], id=row[0]) for row in SECOND_RUN])
def test_a_second_process_is_refused_in_one_line_naming_the_holder(
    trained_run, tiny_assets, tmp_path, capsys, holder, folder, extra
):
    out = folder(trained_run, tmp_path / "run")
    first = holder(out)
    before = files(out)
    assert tiny(tiny_assets, out, *extra) == 2
    [error] = errors_of(capsys.readouterr().err)
    assert f"output.dir={out} is in use by another run (pid {first.pid})" in error
    assert files(out) == before, "the refused process writes nothing"


def test_a_killed_runs_lock_blocks_nothing(trained_run, tiny_assets, tmp_path, holder):
    out = stopped_at_2(trained_run, tmp_path / "run")
    first = holder(out)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert (out / runs.LOCK).read_text().strip() == str(first.pid), "its lock file is still there"
    assert tiny(tiny_assets, out, "--resume") == 0


def test_a_training_process_holds_its_folder_while_it_trains(tiny_assets, tmp_path):
    from transformers import TrainerCallback

    out, seen = tmp_path / "run", []
    try_lock = "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)"

    class TryToLock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                other = subprocess.run(
                    [sys.executable, "-c", try_lock, str(out / runs.LOCK)], capture_output=True, text=True
                )
                seen.append(
                    (other.returncode, "BlockingIOError" in other.stderr, (out / runs.LOCK).read_text().strip())
                )

    assert tiny(tiny_assets, out, "--set", "training.max_steps=2", callbacks=[TryToLock()]) == 0
    assert seen == [(1, True, str(os.getpid()))]


def dump_of(tiny_assets: Path, out: Path, *extra: str) -> str:
    """The config.yaml that tiny(tiny_assets, out, *extra) writes."""
    args = train_grpo.parse_args(tiny_cli(tiny_assets, out, *TRAINED_RUN, *extra))
    return config_to_yaml(load_config(args.config, args.overrides))


# (id, the config.yaml found in output.dir given the run's own dump, whether it is passed as --config, refused)
CONFIG_IN_OUTPUT_DIR = [
    # Regression: a user's own config kept in output.dir and trained with was replaced by the resolved dump.
    ("a-hand-written-config-trained-with", lambda dump: "# my notes\n" + dump, True, True),
    ("another-runs-config", lambda dump: dump.replace("max_steps: 4", "max_steps: 8"), False, True),
    # A run stopped while its model loaded leaves this very dump: the same command starts it again.
    ("this-runs-own-dump", lambda dump: dump, False, False),
]


@pytest.mark.parametrize(
    "found, as_config, refused", [pytest.param(*row[1:], id=row[0]) for row in CONFIG_IN_OUTPUT_DIR]
)
def test_a_config_yaml_in_output_dir_that_a_run_would_replace_is_refused_in_one_line(
    tiny_assets, tmp_path, capsys, monkeypatch, found, as_config, refused
):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(found(dump_of(tiny_assets, out)))
    before = files(out)
    monkeypatch.setattr(train_grpo, "load_model", lambda *a: kill())
    extra = ("--config", str(out / "config.yaml")) if as_config else ()
    if not refused:
        with pytest.raises(Killed):
            tiny(tiny_assets, out, *extra)
        assert files(out)["config.yaml"] == before["config.yaml"]
        return
    assert tiny(tiny_assets, out, *extra) == 2
    [error] = errors_of(capsys.readouterr().err)
    assert error == (
        f"error: output.dir={out} holds a config.yaml other than the one this run writes there: move that file out "
        "of the folder (--config reads it from anywhere), or set output.dir to another folder"
    )
    assert files(out) == before


def model_copy(tiny_assets: Path, tmp: Path) -> Path:
    shutil.copytree(tiny_assets / "model", tmp / "other-model")
    return tmp / "other-model"


# (id, extra CLI words given the tmp folder and assets, the --set that resumes with the run's values)
INCOMPATIBLE = [
    ("another-lora-rank", lambda t, a: ["--set", "lora.r=4"], "--set lora.r=8"),
    ("another-lora-alpha", lambda t, a: ["--set", "lora.alpha=32"], "--set lora.alpha=16"),
    (
        "other-target-modules",
        lambda t, a: ["--set", "lora.target_modules=[q_proj, v_proj]"],
        "--set lora.target_modules=[down_proj, gate_proj",
    ),
    ("another-model", lambda t, a: ["--set", f"model.name={model_copy(a, t)}"], "--set model.name={assets}/model"),
]


@pytest.mark.parametrize("extra, way_out", [pytest.param(*row[1:], id=row[0]) for row in INCOMPATIBLE])
def test_an_incompatible_resume_is_one_line_before_anything_is_written(
    trained_run, tiny_assets, tmp_path, capsys, monkeypatch, extra, way_out
):
    monkeypatch.setattr(train_grpo, "load_model", lambda *a: pytest.fail("a model was loaded"))
    out = stopped_at_2(trained_run, tmp_path / "run")
    before = files(out)
    assert tiny(tiny_assets, out, *extra(tmp_path, tiny_assets), "--resume") == 2
    [error] = errors_of(capsys.readouterr().err)
    assert error.startswith(f"error: {out / 'checkpoint-2'} was trained with ")
    assert way_out.format(assets=tiny_assets) in error and "or set output.dir to a new folder" in error
    # Regression: the advice was "delete it to resume from the checkpoint before", and config.yaml was overwritten.
    assert "delete" not in error
    assert files(out) == before


@pytest.mark.parametrize(
    "saved, same",
    [
        ({"r": 8, "lora_alpha": 16, "target_modules": ["v_proj", "q_proj"]}, True),
        ({"r": 8, "lora_alpha": 16, "target_modules": "q_proj"}, False),
        ({"base_model_name_or_path": "unsloth/qwen2.5-3b-unsloth-bnb-4bit"}, True),
        ({"base_model_name_or_path": "Qwen/Qwen2.5-1.5B"}, False),
        ({}, True),
    ],
    ids=[
        "targets-in-another-order",
        "one-target-as-a-string",
        "unsloths-4bit-copy-of-the-base",
        "another-size",
        "no-adapter-config",
    ],
)
def test_what_counts_as_the_same_adapter_shape(tmp_path, saved, same):
    from recipe.config import load_config
    from recipe.errors import RecipeError

    if saved:
        (tmp_path / "adapter_config.json").write_text(json.dumps(saved))
    cfg = load_config(None, ["lora.r=8", "lora.alpha=16", "lora.target_modules=[q_proj, v_proj]"])
    try:
        runs.check_resumable(tmp_path, cfg)
    except RecipeError:
        assert not same
    else:
        assert same


def test_home_and_variables_expand_in_path_keys(tiny_assets, tmp_path, monkeypatch):
    # Regression: output.dir=~/runs/x put checkpoints in $HOME/runs/x, config and metrics in ./~/runs/x, then crashed.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TINY", str(tiny_assets))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    extra = ("--set", "training.max_steps=2", "--set", "data.dataset=$TINY/data/train.jsonl")
    assert tiny(tiny_assets, Path("~/runs/x"), *extra) == 0
    out = tmp_path / "home" / "runs" / "x"
    assert {"config.yaml", "metrics.jsonl", "adapter", "checkpoint-2"} <= {p.name for p in out.iterdir()}
    assert runs.adapter_complete(out) and list(cwd.iterdir()) == []


class SavesTheTrainedAdapter:
    """What save_adapter asks of a trainer, saving the shared run's adapter: the card is what is under test here."""

    def __init__(self, adapter: Path, step: int):
        self.adapter, self.state = adapter, type("State", (), {"global_step": step})()

    def is_world_process_zero(self) -> bool:
        return True

    def save_model(self, folder: str) -> None:
        shutil.copytree(self.adapter, folder, ignore=shutil.ignore_patterns(runs.MARKER, runs.CARD))


def damage_a_middle_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join([lines[0], "{cut by an editor\n", *lines[2:]]))


# (id, damage(out) -> None, the file the warning names). Each raised inside save_adapter and lost adapter/.
DAMAGED_FOR_THE_CARD = [
    ("metrics-middle-line", lambda out: damage_a_middle_line(out / "metrics.jsonl"), "metrics.jsonl"),
    ("config-not-yaml", lambda out: (out / "config.yaml").write_text("model: [1, 2\n"), "config.yaml"),
    (
        "eval-summary-not-json",
        lambda out: (out / "eval").mkdir(exist_ok=True) or (out / "eval" / "summary.json").write_text("{"),
        "summary.json",
    ),
    (
        "config-of-odd-types",
        lambda out: (out / "config.yaml").write_text("lora:\n  target_modules: 5\n"),
        "the facts of",
    ),
]


@pytest.mark.parametrize("damage, named", [pytest.param(*row[1:], id=row[0]) for row in DAMAGED_FOR_THE_CARD])
def test_a_file_the_card_cannot_read_does_not_stop_the_adapter_save(trained_run, tmp_path, capsys, damage, named):
    out = tmp_path / "run"
    shutil.copytree(trained_run, out, ignore=shutil.ignore_patterns("adapter", "plots"))
    damage(out)
    train_grpo.save_adapter(SavesTheTrainedAdapter(trained_run / "adapter", TRAINED_STEPS), out)
    assert runs.adapter_complete(out) and same_adapter(out / "adapter", trained_run / "adapter")
    card = (out / "adapter" / runs.CARD).read_text()
    assert "## Training" in card and "[More Information Needed]" not in card
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: the model card leaves out ") and named in warning and str(out) in warning


# torch.save with the process's file size capped at 10 kB: the file system refuses the write as a full disk would.
TORCH_WRITE_FAILS = """
import resource, signal, sys, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
try:
    torch.save({"x": torch.zeros(100_000)}, sys.argv[1])
except RuntimeError as error:
    print(error)
"""


@pytest.fixture(scope="module")
def torch_write_error(tmp_path_factory) -> RuntimeError:
    """The RuntimeError this torch raises when the file system refuses its write (a message, no errno)."""
    path = tmp_path_factory.mktemp("capped") / "state.pt"
    said = subprocess.run([sys.executable, "-c", TORCH_WRITE_FAILS, str(path)], capture_output=True, text=True)
    assert said.stdout.strip(), f"torch.save did not fail: {said.stderr[-500:]}"
    return RuntimeError(said.stdout.strip())


class SafetensorError(Exception):
    """Named as safetensors names its own error type."""


# (id, the error raised inside a save, whether it is a failed write)
WRITE_ERRORS = [
    ("disk-full", lambda torch_error: OSError(errno.ENOSPC, "No space left on device"), True),
    ("permission-denied", lambda torch_error: PermissionError(errno.EACCES, "Permission denied"), True),
    ("torch-writer-as-this-torch-raises-it", lambda torch_error: torch_error, True),
    (
        "torch-writer-failed-writing-a-record",
        lambda torch_error: RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
        True,
    ),
    (
        "safetensors",
        lambda torch_error: SafetensorError("Error while serializing: No space left on device (os error 28)"),
        True,
    ),
    # Regression: every RuntimeError counted, so a CUDA or NCCL error in a save read "could not write ... free space".
    (
        "cuda-error",
        lambda torch_error: RuntimeError("CUDA error: an illegal memory access was encountered"),
        False,
    ),
    (
        "nccl-error",
        lambda torch_error: RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error"),
        False,
    ),
    (
        "cuda-out-of-memory",
        lambda torch_error: __import__("torch").OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        False,
    ),
    ("a-bug", lambda torch_error: KeyError("global_step"), False),
]


@pytest.mark.parametrize("make, is_write", [pytest.param(*row[1:], id=row[0]) for row in WRITE_ERRORS])
def test_only_a_failed_write_is_reported_as_one(torch_write_error, tmp_path, make, is_write):
    error = make(torch_write_error)
    assert runs.is_write_error(error) == is_write
    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    fix = "free space, then resume with --resume"
    with (
        pytest.raises(runs.RecipeError if is_write else type(error)) as raised,
        runs.writing(folder, fix, partial=folder),
    ):
        raise error
    if is_write:
        assert str(raised.value).startswith(f"could not write {folder}") and "\n" not in str(raised.value)
    else:
        assert raised.value is error and folder.is_dir(), "not ours to report, nor to delete what it was saving"


# (id, errno or None for torch's writer, the advice train() and writing() give)
ADVICE = [
    ("no-space", errno.ENOSPC, "free space, then resume with --resume"),
    ("quota", errno.EDQUOT, "free space, then resume with --resume"),
    ("torch-writer-no-errno", None, "free space, then resume with --resume"),
    ("permission-denied", errno.EACCES, "fix the permissions, then resume with --resume; or choose another output.dir"),
    ("not-permitted", errno.EPERM, "fix the permissions, then resume with --resume; or choose another output.dir"),
    (
        "read-only-file-system",
        errno.EROFS,
        "fix the permissions, then resume with --resume; or choose another output.dir",
    ),
]


@pytest.mark.parametrize("code, advice", [pytest.param(*row[1:], id=row[0]) for row in ADVICE])
def test_the_advice_for_a_failed_write_follows_its_errno(torch_write_error, tmp_path, monkeypatch, code, advice):
    monkeypatch.setattr(runs, "free_space", lambda path: 0)
    error = torch_write_error if code is None else OSError(code, os.strerror(code))
    assert runs.write_advice(error, "resume with --resume") == advice
    denied = advice.startswith("fix the permissions")
    fix, target = "free space, then resume with --resume", tmp_path / "checkpoint-4"
    with pytest.raises(runs.RecipeError) as raised, runs.writing(target, fix, needed=10**9):
        raise error
    said = str(raised.value)
    assert said.endswith(": fix the permissions or choose another output.dir" if denied else ": " + advice), said
    assert ("the disk is full" in said) == (not denied), "a refused write is not a full disk, however little is free"


def test_a_cuda_error_in_a_checkpoint_save_is_not_reported_as_a_full_disk(tiny_assets, tmp_path, monkeypatch, capsys):
    def cuda_error():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="CUDA error"):
        tiny(tiny_assets, out, callbacks=out_of("checkpoint-4", patch_torch_save, cuda_error)(monkeypatch))
    assert "could not write" not in capsys.readouterr().err
    assert runs.latest_complete(out)[0] == out / "checkpoint-2"
