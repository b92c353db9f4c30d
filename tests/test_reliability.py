"""What a stopped run keeps: resume restores the trained adapter, signals save a checkpoint, bad input is one line."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train_grpo
from conftest import ROOT, files, lora, same_weights, tiny_cli, train_tiny
from recipe import runs
from recipe.config import config_to_yaml, load_config

STEPS = 4
# The signalled run must still be training when the signal lands: at about 0.07 s a step on a CPU,
# 4 steps could end between two polls of the test (its first failure, in CI-sized runs, was that).
SIGNAL_STEPS = 40
# Short completions keep each step of the tiny model well under a second.
FAST = ("--set", "training.max_completion_length=16", "--set", "output.save_steps=2", "--set", "output.sample_every=1")


RUN = ("--set", f"training.max_steps={STEPS}", *FAST)


def run(tiny_assets: Path, out: Path, *extra: str) -> int:
    return train_tiny(tiny_assets, out, *RUN, *extra)


@pytest.fixture(scope="module")
def uninterrupted(tiny_assets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole")
    assert run(tiny_assets, out) == 0
    return out


def stopped_copy(src: Path, dst: Path, keep_adapter=False, drop=("checkpoint-4",)) -> Path:
    shutil.copytree(src, dst)
    for name in drop:
        shutil.rmtree(dst / name)
    if not keep_adapter:
        shutil.rmtree(dst / "adapter")
    return dst


def test_resume_ends_with_the_uninterrupted_weights(uninterrupted, tiny_assets, tmp_path):
    out = stopped_copy(uninterrupted, tmp_path / "resumed")
    assert run(tiny_assets, out, "--resume") == 0
    assert same_weights(lora(out / "adapter"), lora(uninterrupted / "adapter"))
    assert not same_weights(lora(out / "adapter"), lora(out / "adapter", "ref")), "the saved adapter is the trained one"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "reward" in row] == list(range(1, STEPS + 1)), "each step is logged once"


def test_resume_at_the_last_step_saves_the_checkpoint_adapter(uninterrupted, tiny_assets, tmp_path, capsys):
    # The case: max_steps lowered to a checkpoint's step; the killed-while-saving-adapter/ case is the same.
    out = stopped_copy(uninterrupted, tmp_path / "lowered")
    before = files(out)
    assert train_tiny(tiny_assets, out, "--set", "training.max_steps=2", *FAST, "--resume") == 0
    assert "finished" in capsys.readouterr().out
    assert same_weights(lora(out / "adapter"), lora(out / "checkpoint-2"))
    assert not same_weights(lora(out / "adapter"), lora(out / "checkpoint-2", "ref"))
    assert {k: v for k, v in files(out).items() if not k.startswith("adapter/")} == before, "only adapter/ is written"
    # metrics.jsonl still logs steps 3 and 4, which this adapter never trained: its card stops at 2 (of the
    # saved config's 4, which this resume leaves as it was).
    card = (out / "adapter" / runs.CARD).read_text()
    assert "| steps | 2 of max_steps 4 |" in card and "Mean of the last 2 logged steps" in card


def test_resume_of_a_finished_run_changes_nothing(uninterrupted, tiny_assets, capsys):
    before = files(uninterrupted)
    assert run(tiny_assets, uninterrupted, "--resume") == 0
    assert "finished run" in capsys.readouterr().out
    assert files(uninterrupted) == before


@pytest.mark.parametrize(
    "damage, problem",
    [
        pytest.param(lambda c: (c / runs.MARKER).unlink(), "no completion marker", id="save-cut-off"),
        pytest.param(lambda c: (c / "trainer_state.json").write_text(""), "trainer_state.json of", id="empty-state"),
        pytest.param(
            lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:100]),
            "optimizer.pt of 100 bytes",
            id="truncated-optimizer",
        ),
        pytest.param(lambda c: (c / "scheduler.pt").unlink(), "lacks scheduler.pt", id="missing-file"),
        pytest.param(
            lambda c: (c / "adapter_model.safetensors").write_bytes(
                b"x" * (c / "adapter_model.safetensors").stat().st_size
            ),
            "damaged adapter_model",
            id="corrupt-weights",
        ),
    ],
)
def test_damaged_checkpoint_is_skipped_and_logs_are_kept(uninterrupted, tiny_assets, tmp_path, capsys, damage, problem):
    out = stopped_copy(uninterrupted, tmp_path / "damaged", drop=())
    damage(out / "checkpoint-4")
    metrics = (out / "metrics.jsonl").read_bytes()
    assert run(tiny_assets, out, "--resume", "--dry-run") == 0
    assert f"skipping {out / 'checkpoint-4'}" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == metrics
    assert run(tiny_assets, out, "--set", f"output.resume={out / 'checkpoint-4'}") == 2
    assert problem in capsys.readouterr().err


class Loading(BaseException):
    """The model started to load: every check passed and config.yaml is written."""


def stop_at_load(*args):
    raise Loading


def resumable_at_2(uninterrupted: Path, dst: Path) -> Path:
    """The uninterrupted run stopped after checkpoint-2, its config.yaml naming the copy as output.dir."""
    out = stopped_copy(uninterrupted, dst)
    cfg = load_config(str(out / "config.yaml"))
    cfg.output.dir = str(out)
    (out / "config.yaml").write_text(config_to_yaml(cfg))
    return out


def lr(value: str) -> tuple[str, str]:
    return ("--set", f"training.learning_rate={value}")


# (id, edit(config.yaml's text) before the resumes, the --resume legs' extra words, kept as config-until-2.yaml,
#  what the last leg says)
RESUMED_CONFIG = [
    # Regression: a resume with another setting rewrote config.yaml, and the first leg's settings were lost.
    ("another-learning-rate", str, [lr("1e-4")], True, "training.learning_rate 0.0002 -> 0.0001"),
    (
        "resumed-twice-from-the-same-step",
        str,
        [lr("1e-4"), lr("5e-5")],
        True,
        "training.learning_rate 0.0001 -> 5e-05",
    ),
    ("the-same-settings", str, [()], False, None),
    ("hand-written-with-the-same-settings", lambda text: "# my notes\n" + text, [()], False, None),
]


@pytest.mark.parametrize("edit, legs, kept, said", [pytest.param(*row[1:], id=row[0]) for row in RESUMED_CONFIG])
def test_a_resume_keeps_the_config_of_the_steps_before_it(
    uninterrupted, tiny_assets, tmp_path, capsys, monkeypatch, edit, legs, kept, said
):
    monkeypatch.setattr(train_grpo, "load_model", stop_at_load)
    out = resumable_at_2(uninterrupted, tmp_path / "run")
    (out / "config.yaml").write_text(edit((out / "config.yaml").read_text()))
    first = (out / "config.yaml").read_bytes()
    for leg in legs:
        capsys.readouterr()
        with pytest.raises(Loading):
            run(tiny_assets, out, *leg, "--resume")
    printed = capsys.readouterr().out
    records = sorted(p.name for p in out.glob("config*.yaml"))
    if not kept:
        assert records == ["config.yaml"] and (out / "config.yaml").read_bytes() == first
        assert "other settings" not in printed
        return
    assert records == ["config-until-2.yaml", "config.yaml"]
    assert (out / "config-until-2.yaml").read_bytes() == first
    assert load_config(str(out / "config.yaml")).training.learning_rate == float(legs[-1][1].split("=")[1])
    assert (
        f"resuming from step 2 with other settings: {said}; config.yaml now holds them, config-until-2.yaml "
        "the settings that trained up to step 2"
    ) in printed


def unmark(folder: Path) -> None:
    (folder / runs.MARKER).unlink()


def garble_marker(folder: Path) -> None:
    (folder / runs.MARKER).write_text("{")


# (id, damage(out) -> None, how the run is asked to resume, the reason the one line gives)
NOTHING_RESUMABLE = [
    # Regression: --resume warned "starting again from step 0 (its logs are cleared)", then cleared them.
    (
        "every-marker-gone",
        lambda out: [unmark(c) for c in runs.checkpoints(out)],
        ("--resume",),
        "checkpoint-4 has no completion marker (its save was cut off); checkpoint-2 has no completion marker",
    ),
    (
        "every-marker-unreadable",
        lambda out: [garble_marker(c) for c in runs.checkpoints(out)],
        ("--resume",),
        f"checkpoint-4 has an unreadable {runs.MARKER}; checkpoint-2 has an unreadable {runs.MARKER}",
    ),
    (
        "auto-in-the-config",
        lambda out: [unmark(c) for c in runs.checkpoints(out)],
        ("--set", "output.resume=auto"),
        "checkpoint-4 has no completion marker",
    ),
    (
        "logs-but-no-checkpoint",
        lambda out: [shutil.rmtree(c) for c in runs.checkpoints(out)],
        ("--resume",),
        "(metrics.jsonl, samples.jsonl; no checkpoint)",
    ),
]


@pytest.mark.parametrize("damage, asked, why", [pytest.param(*row[1:], id=row[0]) for row in NOTHING_RESUMABLE])
def test_a_run_with_nothing_resumable_is_one_line_and_keeps_its_logs(
    uninterrupted, tiny_assets, tmp_path, capsys, monkeypatch, damage, asked, why
):
    monkeypatch.setattr(train_grpo, "load_model", lambda *a: pytest.fail("a model was loaded"))
    out = stopped_copy(uninterrupted, tmp_path / "damaged", drop=())
    damage(out)
    before = files(out)
    assert run(tiny_assets, out, *asked) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert error.startswith(f"error: output.dir={out} holds an earlier run with nothing to resume (") and why in error
    assert error.endswith(f"to start over, delete {out} or set output.dir to a new folder")
    assert files(out) == before


@pytest.mark.parametrize(
    "leftover",
    [
        pytest.param("metrics.jsonl", id="killed-before-first-checkpoint"),
        pytest.param("adapter", id="checkpoints-deleted"),
    ],
)
def test_earlier_run_is_not_overwritten(uninterrupted, tiny_assets, tmp_path, capsys, leftover):
    out = tmp_path / "earlier"
    out.mkdir()
    (out / leftover).mkdir() if leftover == "adapter" else (out / leftover).write_text('{"step": 1}\n')
    assert run(tiny_assets, out) == 2
    assert f"already holds an earlier run ({leftover})" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [leftover]


def killed_while_loading(out: Path) -> Path:
    """What a run killed while its model loaded leaves: its config and lock, no log or checkpoint."""
    out.mkdir()
    (out / "config.yaml").write_text("model:\n  name: x\n")
    (out / runs.LOCK).write_text("123\n")
    return out


# (id, make(folder) -> the output.dir that --resume is given)
NOTHING_TO_RESUME = [
    # Regression: a mistyped output.dir trained from step 0 without a word.
    ("a-mistyped-folder", lambda out: out),
    ("an-empty-folder", lambda out: out.mkdir() or out),
    ("a-run-killed-while-its-model-loaded", killed_while_loading),
]


@pytest.mark.parametrize("make", [pytest.param(make, id=i) for i, make in NOTHING_TO_RESUME])
def test_resume_with_nothing_to_resume_is_one_line_and_starts_nothing(tiny_assets, tmp_path, capsys, monkeypatch, make):
    monkeypatch.setattr(train_grpo, "load_model", lambda *a: pytest.fail("a model was loaded"))
    out = make(tmp_path / "run")
    before = files(out) if out.exists() else None
    assert run(tiny_assets, out, "--resume") == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: --resume: nothing to resume in output.dir={out} (no checkpoint or log): check output.dir, "
        "or leave out --resume to start a new run"
    ]
    assert (files(out) if out.exists() else None) == before


def test_resume_auto_in_the_config_starts_a_new_run_and_says_so(tiny_assets, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(tiny_assets, out, "--set", "output.resume=auto", "--dry-run") == 0
    assert f"warning: nothing to resume in {out}: starting at step 0" in capsys.readouterr().err


def offline_tiny(argv):
    import offline

    return offline.main(["tiny", *argv])


def module_parse_args(module: str):
    return lambda argv: __import__(module).parse_args(argv)


# (id, an entry point's argument parser, its words, the flag among them cut short)
ABBREVIATED = [
    # Regression: argparse took --resum for --resume.
    ("train-resum", module_parse_args("train_grpo"), ["--resum"], "--resum"),
    ("train-dry", module_parse_args("train_grpo"), ["--dry"], "--dry"),
    ("train-card", module_parse_args("train_grpo"), ["--card", "24"], "--card"),
    ("eval-base", module_parse_args("eval_grpo"), ["--adapter", "a", "--base"], "--base"),
    ("eval-max-new", module_parse_args("eval_grpo"), ["--adapter", "a", "--max-new", "8"], "--max-new"),
    ("plots-ou", module_parse_args("plots"), ["metrics.jsonl", "--ou", "x"], "--ou"),
    ("offline-tiny-forc", offline_tiny, ["--forc", "--out", "{tmp}/tiny"], "--forc"),
]


@pytest.mark.parametrize("parse, argv, cut", [pytest.param(*row[1:], id=row[0]) for row in ABBREVIATED])
def test_a_flag_cut_short_is_refused_not_guessed(tmp_path, capsys, parse, argv, cut):
    with pytest.raises(SystemExit) as raised:
        parse([word.format(tmp=tmp_path) for word in argv])
    assert raised.value.code == 2
    assert f"unrecognized arguments: {cut}" in capsys.readouterr().err


def test_sigterm_saves_the_step_and_resume_finishes_it(tiny_assets, tmp_path):
    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "train_grpo.py"),
            *tiny_cli(tiny_assets, out),
            "--set",
            f"training.max_steps={SIGNAL_STEPS}",
            *FAST,
            "--set",
            "output.save_steps=100",
        ]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    uninterrupted = tmp_path / "whole"
    assert subprocess.run(command(uninterrupted), cwd=ROOT, env=env, capture_output=True).returncode == 0
    out = tmp_path / "signalled"
    process = subprocess.Popen(
        command(out), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    saved = runs.checkpoints(out)
    assert saved and runs.folder_problem(saved[-1]) is None
    step = runs.saved_step(saved[-1])
    assert 1 <= step < SIGNAL_STEPS and not (out / "adapter").exists()
    assert f"stopped at step {step} of {SIGNAL_STEPS}: checkpoint-{step} saved; continue with: python " in err
    assert err.strip().splitlines()[-1].endswith("--resume")

    assert subprocess.run([*command(out), "--resume"], cwd=ROOT, env=env, capture_output=True).returncode == 0
    assert runs.saved_step(out / "adapter") == SIGNAL_STEPS
    assert same_weights(lora(out / "adapter"), lora(uninterrupted / "adapter"))


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def fresh(uninterrupted: Path, out: Path) -> Path:
    return out


# (id, the train_grpo name a Ctrl-C lands in, the folder given the uninterrupted run, extra words)
BEFORE_TRAINING = [
    # Regression: each printed a KeyboardInterrupt traceback.
    ("reading-the-config", "load_config", fresh, ()),
    ("importing-torch", "plans_for_a_gpu", fresh, ()),
    ("loading-the-tokenizer", "load_tokenizer", fresh, ()),
    ("building-the-prompts", "build_prompts", fresh, ()),
    ("building-the-prompts-of-a-resume", "build_prompts", resumable_at_2, ("--resume",)),
]


@pytest.mark.parametrize("name, folder, extra", [pytest.param(*row[1:], id=row[0]) for row in BEFORE_TRAINING])
def test_ctrl_c_before_training_is_one_line_and_writes_nothing(
    uninterrupted, tiny_assets, tmp_path, capsys, monkeypatch, name, folder, extra
):
    out = folder(uninterrupted, tmp_path / "run")
    before = files(out) if out.exists() else None
    monkeypatch.setattr(train_grpo, name, interrupt)
    assert run(tiny_assets, out, *extra) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines() == [
        "stopped before training started; nothing was written to output.dir"
    ]
    assert (files(out) if out.exists() else None) == before


class CtrlCAgain:
    """A second Ctrl-C, which stops at once: as the step after ``step`` begins, every log of ``step`` written."""

    def __new__(cls, step):
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == step:
                    raise KeyboardInterrupt

        return Callback()


def ctrl_c_while_loading(monkeypatch) -> list:
    monkeypatch.setattr(train_grpo, "load_model", interrupt)
    return []


# (id, the folder given the uninterrupted run, extra words, arm(monkeypatch) -> callbacks, the line it ends with,
#  the next command's extra words, whether that command starts (else it is refused))
STOPPED_AT_ONCE = [
    (
        "while-the-model-loads",
        fresh,
        (),
        ctrl_c_while_loading,
        "stopped before this run trained a step: run the same command again",
        (),
        True,
    ),
    (
        "while-a-resume-loads-its-model",
        resumable_at_2,
        ("--resume",),
        ctrl_c_while_loading,
        "stopped at once; {out}/checkpoint-2 is the newest complete checkpoint: continue with: python train_grpo.py ",
        ("--resume",),
        True,
    ),
    # Regression: it said "the newest complete one is kept" with none saved.
    (
        "a-second-ctrl-c-before-the-first-checkpoint",
        fresh,
        (),
        lambda monkeypatch: [CtrlCAgain(1)],
        "stopped before any checkpoint was saved, so there is nothing to resume: to start over, delete {out} or "
        "set output.dir to a new folder",
        ("--resume",),
        False,
    ),
    (
        "a-second-ctrl-c-after-a-checkpoint",
        fresh,
        (),
        lambda monkeypatch: [CtrlCAgain(3)],
        "stopped at once; {out}/checkpoint-2 is the newest complete checkpoint: continue with: python train_grpo.py ",
        ("--resume",),
        True,
    ),
]


@pytest.mark.parametrize(
    "folder, extra, arm, said, then, starts", [pytest.param(*row[1:], id=row[0]) for row in STOPPED_AT_ONCE]
)
def test_a_ctrl_c_that_stops_at_once_says_what_is_kept_and_what_to_run_next(
    uninterrupted, tiny_assets, tmp_path, capsys, monkeypatch, folder, extra, arm, said, then, starts
):
    out = folder(uninterrupted, tmp_path / "run")
    with monkeypatch.context() as m:
        assert train_tiny(tiny_assets, out, *RUN, *extra, callbacks=arm(m)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(said.format(out=out)), last
    assert "continue with:" not in last or last.endswith(" --resume")
    # What the line says to do next is what the recipe then does.
    monkeypatch.setattr(train_grpo, "load_model", stop_at_load)
    if starts:
        with pytest.raises(Loading):
            train_tiny(tiny_assets, out, *RUN, *then)
    else:
        assert train_tiny(tiny_assets, out, *RUN, *then) == 2


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def model_without(tiny_assets: Path, tmp: Path, *names: str, damage: str | None = None) -> Path:
    model = tmp / "model"
    shutil.copytree(tiny_assets / "model", model)
    for name in names:
        (model / name).unlink()
    if damage:
        (model / damage).write_bytes(b"\0" * 64)
    return model


def model_with_config(tiny_assets: Path, tmp: Path, **changes) -> Path:
    """A copy of the tiny model whose config.json sets ``changes``: sizes its weights were not saved with."""
    model = model_without(tiny_assets, tmp)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **changes}))
    return model


NOT_UTF8_ROW = b'{"question": "\xff", "answer": "#### 1"}\n'
SECTION_TWICE = b"training:\n  learning_rate: 0.001\ntraining:\n  max_steps: 4\n"

# (id, extra CLI words given a tmp folder and the assets, fragment of the one-line error)
BAD_INPUT = [
    (
        "set-bad-yaml",
        lambda t, a: ["--set", "training.max_steps=[1,"],
        "--set 'training.max_steps=[1,': the value is not valid YAML",
    ),
    ("config-not-utf8", lambda t, a: ["--config", str(write(t / "c.yaml", b"model:\n  name: \xff\n"))], "is not UTF-8"),
    (
        "data-not-utf8",
        lambda t, a: ["--set", "data.dataset=" + str(write(t / "d.jsonl", NOT_UTF8_ROW))],
        "could not read data.dataset",
    ),
    ("seed-out-of-range", lambda t, a: ["--set", "training.seed=-1"], "training.seed=-1"),
    ("loss-type", lambda t, a: ["--set", "training.loss_type=grop"], "training.loss_type='grop': use one of grpo"),
    ("scheduler", lambda t, a: ["--set", "training.lr_scheduler_type=cosin"], "training.lr_scheduler_type='cosin'"),
    ("optim", lambda t, a: ["--set", "training.optim=adamw_torh"], "did you mean 'adamw_torch'"),
    ("adam-beta", lambda t, a: ["--set", "training.adam_beta2=1.0"], "training.adam_beta2=1.0: use a value in [0, 1)"),
    (
        "inf-learning-rate",
        lambda t, a: ["--set", "training.learning_rate=.inf"],
        "training.learning_rate=inf: use a finite number",
    ),
    ("nan-beta", lambda t, a: ["--set", "training.beta=.nan"], "training.beta=nan"),
    ("nan-temperature", lambda t, a: ["--set", "training.temperature=.nan"], "training.temperature=nan"),
    ("nan-grad-norm", lambda t, a: ["--set", "training.max_grad_norm=.nan"], "training.max_grad_norm=nan"),
    ("nan-reward-weight", lambda t, a: ["--set", "rewards.correctness=.nan"], "rewards.correctness=nan"),
    (
        "target-module",
        lambda t, a: ["--set", "lora.target_modules=[q_proj, qkv_proj]"],
        "lora.target_modules names qkv_proj",
    ),
    (
        "too-few-prompts",
        lambda t, a: ["--set", "data.limit=1", "--set", "training.num_generations=64"],
        "has 1 usable prompt(s)",
    ),
    ("output-is-a-file", lambda t, a: ["--set", f"output.dir={write(t / 'f', b'')}"], "is a file"),
    (
        "no-tokenizer",
        lambda t, a: ["--set", f"model.name={model_without(a, t, 'tokenizer.json')}"],
        "has no tokenizer files",
    ),
    ("no-weights", lambda t, a: ["--set", f"model.name={model_without(a, t, 'model.safetensors')}"], "has no weights"),
    (
        "corrupt-weights",
        lambda t, a: ["--set", f"model.name={model_without(a, t, damage='model.safetensors')}"],
        "damaged model.safetensors",
    ),
    ("missing-model-folder", lambda t, a: ["--set", f"model.name={t / 'nothing'}"], "no such folder"),
    # Regression: a config.json whose sizes the weights do not have failed only once the model loaded.
    (
        "config-disagrees-with-weights",
        lambda t, a: ["--set", f"model.name={model_with_config(a, t, hidden_size=128)}"],
        "config.json's hidden_size=128 makes model.embed_tokens.weight [688, 128]",
    ),
    # Issue 30's config shapes and paths: each was a traceback, a crash after the model loaded, or silent.
    ("config-is-a-list", lambda t, a: ["--config", str(write(t / "c.yaml", b"- model\n- data\n"))], "got a YAML list"),
    ("config-is-a-number", lambda t, a: ["--config", str(write(t / "c.yaml", b"5\n"))], "got a YAML int"),
    (
        "section-written-twice",
        lambda t, a: ["--config", str(write(t / "c.yaml", SECTION_TWICE))],
        "sets 'training' twice (lines 1 and 3)",
    ),
    (
        "key-written-twice",
        lambda t, a: ["--config", str(write(t / "c.yaml", b"training:\n  beta: 0\n  beta: 1\n"))],
        "sets 'beta' twice (lines 2 and 3)",
    ),
    ("empty-output-dir", lambda t, a: ["--set", "output.dir="], "output.dir is empty"),
    ("blank-output-dir", lambda t, a: ["--set", "output.dir=' '"], "output.dir is empty"),
    ("empty-model-name", lambda t, a: ["--set", "model.name=''"], "model.name is empty"),
    ("unset-variable", lambda t, a: ["--set", "data.dataset=$NO_SUCH_VARIABLE/x.jsonl"], "NO_SUCH_VARIABLE is not set"),
    ("zero-byte-data", lambda t, a: ["--set", f"data.dataset={write(t / 'd.jsonl', b'')}"], "is empty (no rows)"),
    # A reviewer's findings: each was a traceback, before or after the model loaded, or trained nothing.
    ("config-is-a-folder", lambda t, a: ["--config", str(t)], "is a directory"),
    ("config-has-a-tab", lambda t, a: ["--config", str(write(t / "c.yaml", b"training:\n\tbeta: 0\n"))], "not tabs"),
    (
        "scheduler-without-its-settings",
        lambda t, a: ["--set", "training.lr_scheduler_type=cosine_with_min_lr"],
        "set training.trl.lr_scheduler_kwargs, e.g. {min_lr_rate: 0.1}",
    ),
    (
        "scheduler-needs-evaluation",
        lambda t, a: ["--set", "training.lr_scheduler_type=reduce_lr_on_plateau"],
        "steps on",
    ),
    (
        "trl-text-for-a-float",
        lambda t, a: ["--set", "training.trl.epsilon=abc"],
        "training.trl.epsilon: expected float",
    ),
    ("trl-no-iterations", lambda t, a: ["--set", "training.trl.num_iterations=0"], "training.trl.num_iterations=0"),
    ("epochs-beside-steps", lambda t, a: ["--set", "training.num_train_epochs=3"], "set training.max_steps=-1"),
    ("rewards-all-zero", lambda t, a: ["--set", "rewards={correctness: 0}"], "rewards: every weight is 0"),
]


@pytest.mark.parametrize("extra, message", [pytest.param(e, m, id=i) for i, e, m in BAD_INPUT])
def test_bad_input_is_one_line_before_any_model_loads(tiny_assets, tmp_path, capsys, extra, message):
    assert run(tiny_assets, tmp_path / "out", *extra(tmp_path, tiny_assets)) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err[-1000:]
    assert not (tmp_path / "out").exists()


# (id, config.json changes, fragment of the one-line error): each size the weights' shapes pin down.
SIZES_THAT_DISAGREE = [
    (
        "hidden-size",
        {"hidden_size": 128},
        "hidden_size=128 makes model.embed_tokens.weight [688, 128], but the weights hold [688, 64]",
    ),
    (
        "vocab-size",
        {"vocab_size": 700},
        "vocab_size=700 makes model.embed_tokens.weight [700, 64], but the weights hold [688, 64]",
    ),
    (
        "intermediate-size",
        {"intermediate_size": 256},
        "intermediate_size=256 makes model.layers.0.mlp.gate_proj.weight [256, 64], but the weights hold [192, 64]",
    ),
    (
        "more-layers",
        {"num_hidden_layers": 3, "layer_types": ["full_attention"] * 3},
        "num_hidden_layers=3, but the weights hold 2 layers",
    ),
    (
        "fewer-layers",
        {"num_hidden_layers": 1, "layer_types": ["full_attention"]},
        "num_hidden_layers=1, but the weights hold 2 layers",
    ),
    (
        "head-dim",
        {"head_dim": 32},
        "num_attention_heads=4, head_dim=32 make model.layers.0.self_attn.q_proj.weight [128, 64], but the weights hold [64, 64]",
    ),
]


@pytest.mark.parametrize("changes, message", [pytest.param(c, m, id=i) for i, c, m in SIZES_THAT_DISAGREE])
def test_a_config_json_that_disagrees_with_the_weights_is_one_line_before_loading(
    tiny_assets, tmp_path, changes, message
):
    from recipe import preflight
    from recipe.config import load_config
    from recipe.errors import RecipeError

    model = model_with_config(tiny_assets, tmp_path, **changes)
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), [f"model.name={model}"])
    with pytest.raises(RecipeError, match=re.escape(message)) as error:
        preflight.check_model_folder(cfg)
    assert "\n" not in str(error.value) and str(error.value).endswith(
        ": restore the config.json that came with these weights, or download the model again"
    )


def test_one_reward_override_keeps_the_other_rewards():
    from recipe.config import default_rewards, load_config

    for config in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(str(config), ["rewards.correctness=2"])
        assert cfg.rewards == {**default_rewards(), "correctness": 2.0}, config.name


def test_an_output_dir_that_cannot_be_written_is_one_line_before_any_model_loads(
    tiny_assets, tmp_path, capsys, monkeypatch
):
    parent = tmp_path / "read-only"
    parent.mkdir()
    # Root writes anywhere, so chmod proves nothing here: the check asks os.access, as for any user.
    monkeypatch.setattr(runs.os, "access", lambda path, mode: Path(path) != parent and os.access(path, mode))
    assert run(tiny_assets, parent / "out") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: output.dir={parent / 'out'}: {parent} is not writable: choose a folder you can write to, or fix its permissions"
    ]


HUB = [
    # id, model.name, data.dataset, hub reachable, cached repos, expected error or note (None: no word)
    ("reachable", "Qwen/Qwen2.5-3B", "openai/gsm8k", True, (), None),
    ("local-paths-no-probe", "LOCAL", "LOCAL", False, (), None),
    ("gsm-symbolic-is-not-a-hub-id", "LOCAL", "gsm-symbolic", False, (), None),
    # A mistyped local file is load_rows' "no such file or folder", not a hub id.
    ("missing-data-file-is-not-a-hub-id", "LOCAL", "data/missing.jsonl", False, (), None),
    ("missing-data-folder-is-not-a-hub-id", "LOCAL", "./missing", False, (), None),
    (
        "unreachable-nothing-cached",
        "Qwen/Qwen2.5-3B",
        "openai/gsm8k",
        False,
        (),
        "error: model.name=Qwen/Qwen2.5-3B and data.dataset=openai/gsm8k need the Hugging Face Hub",
    ),
    (
        "unreachable-model-cached-dataset-not",
        "Qwen/Qwen2.5-3B",
        "openai/gsm8k",
        False,
        ("models--Qwen--Qwen2.5-3B",),
        "error: data.dataset=openai/gsm8k needs the Hugging Face Hub",
    ),
    (
        "unreachable-all-cached",
        "Qwen/Qwen2.5-3B",
        "openai/gsm8k",
        False,
        ("models--Qwen--Qwen2.5-3B", "datasets--openai--gsm8k"),
        "note: Qwen/Qwen2.5-3B, openai/gsm8k from the local Hugging Face cache (HF_HUB_OFFLINE=1)",
    ),
]


@pytest.mark.parametrize("model, dataset, reachable, cached, expected", [pytest.param(*r[1:], id=r[0]) for r in HUB])
def test_an_unreachable_hub_is_one_line_in_seconds_or_the_local_cache(
    hub_down, tmp_path, monkeypatch, model, dataset, reachable, cached, expected
):
    from huggingface_hub import constants

    from recipe import preflight
    from recipe.config import load_config
    from recipe.errors import RecipeError

    probes = []
    monkeypatch.setattr(preflight, "hub_reachable", lambda endpoint: probes.append(endpoint) or reachable)
    for repo in cached:
        (hub_down / repo / "snapshots" / "abc123").mkdir(parents=True)
    local = str(tmp_path)  # any existing path stands for a local folder or file
    cfg = load_config(str(ROOT / "config.yaml"), [f"model.name={model if model != 'LOCAL' else local}"])
    dataset = local if dataset == "LOCAL" else dataset
    if expected is None:
        assert preflight.check_hub(cfg, dataset) is None
        assert probes == ([] if model == "LOCAL" else [preflight.hub_endpoint()])
    elif expected.startswith("error: "):
        with pytest.raises(RecipeError, match=expected.removeprefix("error: ")) as error:
            preflight.check_hub(cfg, dataset)
        assert "\n" not in str(error.value) and "set " in str(error.value)
    else:
        note = preflight.check_hub(cfg, dataset)
        assert note.endswith(expected.removeprefix("note: "))
        assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True


def test_offline_mode_asks_nothing_of_the_hub(monkeypatch):
    from huggingface_hub import constants

    from recipe import preflight
    from recipe.config import load_config

    monkeypatch.setattr(preflight, "hub_reachable", lambda endpoint: pytest.fail("probed the hub in offline mode"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    assert preflight.check_hub(load_config(str(ROOT / "config.yaml"), []), "openai/gsm8k") is None


def test_the_hub_probe_takes_any_http_answer_as_reachable_and_no_answer_as_not(tmp_path):
    import http.server
    import socket
    import threading

    from recipe import preflight

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert preflight.hub_reachable(f"http://127.0.0.1:{server.server_port}", timeout=5)
    finally:
        server.shutdown()
    with socket.socket() as closed:  # a port bound and never listened on refuses at once
        closed.bind(("127.0.0.1", 0))
        assert not preflight.hub_reachable(f"http://127.0.0.1:{closed.getsockname()[1]}", timeout=5)
    assert not preflight.hub_reachable("not a url", timeout=5)


@pytest.mark.parametrize(
    "value, expected", [("", 10.0), ("3", 3.0), ("soon", 10.0)], ids=["unset", "set", "not-a-number"]
)
def test_the_hub_probe_waits_as_long_as_one_hub_request(monkeypatch, value, expected):
    import urllib.request

    from recipe import preflight

    waited = []

    def urlopen(request, timeout):
        waited.append(timeout)
        raise OSError("unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", value)
    assert not preflight.hub_reachable("https://huggingface.co") and waited == [expected]


def test_training_with_hub_ids_and_no_hub_stops_in_one_line_without_retries(hub_down, tmp_path, capsys):
    code = train_grpo.main(
        [
            "--config",
            str(ROOT / "config.yaml"),
            "--dry-run",
            "--card-gib",
            "24",
            "--set",
            f"output.dir={tmp_path / 'o'}",
        ]
    )
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and "cannot be reached" in errors[0]
    assert "Retrying" not in captured.err + captured.out
    assert not (tmp_path / "o").exists()
