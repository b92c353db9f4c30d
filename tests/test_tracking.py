"""output.report_to: names checked, a missing package refused before loading, TensorBoard curves read back offline."""

import importlib.util
import json
import socket
from pathlib import Path

import pytest

import train_grpo
from conftest import tiny_cli, train_tiny
from recipe import tracking
from recipe.config import load_config
from recipe.errors import RecipeError
from recipe.grpo_config import grpo_args

STEPS = 3
SHORT = (
    "--set",
    f"training.max_steps={STEPS}",
    "--set",
    "training.max_completion_length=32",
    "--set",
    "output.save_steps=100",
)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("none", "none"),
        ("tensorboard", ["tensorboard"]),
        ("[tensorboard, wandb, trackio]", ["tensorboard", "wandb", "trackio"]),
    ],
    ids=["none", "one", "a-list"],
)
def test_report_to_reaches_grpo_config(value, expected):
    cfg = load_config(None, [f"output.report_to={value}", "model.fast_inference=false", "training.optim=adamw_torch"])
    args = grpo_args(cfg, "trl", [0])
    # transformers turns "none" into [] itself.
    assert args.report_to == ([] if expected == "none" else expected)
    assert args.trackio_static_space_id is False


@pytest.mark.parametrize(
    "value, message",
    [
        ("tensorbord", "output.report_to: unknown tracker 'tensorbord': did you mean 'tensorboard'?"),
        ("[wandb, trakio]", "output.report_to: unknown tracker 'trakio': did you mean 'trackio'?"),
        ("mlflow", "output.report_to: unknown tracker 'mlflow': use one of none, tensorboard, wandb, trackio"),
        (
            "[none, wandb]",
            "output.report_to=['none', 'wandb']: 'none' cannot be listed with trackers; drop it or use none alone",
        ),
        ("3", "output.report_to: expected str or list, got 3"),
    ],
    ids=["typo", "typo-in-a-list", "unsupported", "none-with-a-tracker", "not-a-name"],
)
def test_bad_report_to_is_one_line(value, message):
    with pytest.raises(RecipeError) as error:
        load_config(None, [f"output.report_to={value}"])
    assert str(error.value) == message


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb", "trackio"])
def test_missing_tracker_package_is_refused_before_the_model_loads(tracker, tiny_assets, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a))
    monkeypatch.setattr(train_grpo.backends, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "run"
    assert train_tiny(tiny_assets, out, "--set", f"output.report_to={tracker}") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: output.report_to={tracker} needs the {tracker} package: pip install {tracker}"
    ]
    assert not out.exists()


NO_WANDB_KEY = (
    "output.report_to=wandb finds no W&B API key: set WANDB_API_KEY, run `wandb login` (it writes ~/.netrc), "
    "or set WANDB_MODE=offline to log locally"
)


# Regression: wandb installed without a key failed with a 40-line traceback after the model loaded.
# (id, environment variables, files written under a fresh HOME, refused)
WANDB_CREDENTIALS = [
    ("no-key", {}, {}, True),
    ("api-key", {"WANDB_API_KEY": "k" * 40}, {}, False),
    ("empty-api-key", {"WANDB_API_KEY": ""}, {}, True),
    ("netrc", {}, {".netrc": "machine api.wandb.ai login user password key\n"}, False),
    ("netrc-for-another-host", {}, {".netrc": "machine example.com login user password key\n"}, True),
    ("netrc-named-by-NETRC", {"NETRC": "{home}/elsewhere"}, {"elsewhere": "machine api.wandb.ai password k\n"}, False),
    (
        "netrc-for-its-own-server",
        {"WANDB_BASE_URL": "https://wandb.example.com"},
        {".netrc": "machine wandb.example.com password k\n"},
        False,
    ),
    ("offline", {"WANDB_MODE": "offline"}, {}, False),
    ("disabled", {"WANDB_MODE": "disabled"}, {}, False),
    ("dryrun", {"WANDB_MODE": "dryrun"}, {}, False),
    ("online", {"WANDB_MODE": "online"}, {}, True),
    ("settings-file-offline", {}, {".config/wandb/settings": "[default]\nmode = offline\n"}, False),
    ("settings-file-key", {}, {".config/wandb/settings": "[default]\napi_key = k\n"}, False),
    ("identity-token-file", {"WANDB_IDENTITY_TOKEN_FILE": "/token"}, {}, False),
]


@pytest.mark.parametrize("env, files, refused", [pytest.param(*row[1:], id=row[0]) for row in WANDB_CREDENTIALS])
def test_wandb_without_credentials_is_refused_before_the_model_loads(tmp_path, monkeypatch, env, files, refused):
    for name in (
        "WANDB_API_KEY",
        "WANDB_MODE",
        "WANDB_BASE_URL",
        "WANDB_CONFIG_DIR",
        "WANDB_IDENTITY_TOKEN_FILE",
        "NETRC",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(home=tmp_path))
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    installed = {"wandb": object(), "tensorboard": object()}.get  # installed here or not
    if refused:
        with pytest.raises(RecipeError) as error:
            tracking.check_installed("wandb", installed)
        assert str(error.value) == NO_WANDB_KEY
    else:
        tracking.check_installed(["tensorboard", "wandb"], installed)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tensorboard_run(tiny_assets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tensorboard")
    assert train_tiny(tiny_assets, out, *SHORT, "--set", "output.report_to=tensorboard") == 0
    return out


def test_tensorboard_holds_every_reward_curve_as_metrics_jsonl_does(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [run_dir] = (tensorboard_run / "runs").iterdir()  # transformers' default: <output.dir>/runs/<date>_<host>
    events = EventAccumulator(str(run_dir))
    events.Reload()
    logged = [row for row in read_jsonl(tensorboard_run / "metrics.jsonl") if "reward" in row]
    cfg = load_config(str(tensorboard_run / "config.yaml"))
    for name in cfg.rewards:
        curve = [(e.step, e.value) for e in events.Scalars(f"train/rewards/{name}/mean")]
        assert curve == [(row["step"], pytest.approx(row[f"rewards/{name}/mean"])) for row in logged], name
    assert [e.step for e in events.Scalars("train/reward")] == list(range(1, STEPS + 1))


def only_localhost(monkeypatch) -> list:
    """Fail any connection from this process to an address outside this machine; returns the ones tried."""
    tried = []
    connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            tried.append(host)
            raise OSError(f"test: no network to {host}")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return tried


def test_wandb_offline_writes_a_local_run_in_the_output_folder(tiny_assets, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is optional: pip install wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tried = only_localhost(monkeypatch)
    out = tmp_path / "run"
    assert train_tiny(tiny_assets, out, *SHORT, "--set", "output.report_to=wandb") == 0
    [run] = (out / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb")), f"no run file in {run}"
    assert tried == []


# A socket guard for a child process: trackio reads TRACKIO_DIR when first imported, and TRL imports it early.
GUARDED_TRAIN = """
import socket, sys
connect = socket.socket.connect
def guarded(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        print(f"blocked connection to {host}", file=sys.stderr)
        raise OSError(f"test: no network to {host}")
    return connect(self, address)
socket.socket.connect = guarded
sys.path.insert(0, sys.argv[1])
import train_grpo
sys.exit(train_grpo.main(sys.argv[2:]))
"""


def test_trackio_logs_every_reward_locally(tiny_assets, tmp_path):
    import os
    import sqlite3
    import subprocess
    import sys

    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio is optional: pip install trackio")
    root, out, database_dir = Path(train_grpo.__file__).parent, tmp_path / "run", tmp_path / "trackio"
    env = {k: v for k, v in os.environ.items() if k != "TRACKIO_SPACE_ID"} | {"TRACKIO_DIR": str(database_dir)}
    args = [
        *tiny_cli(tiny_assets, out),
        *SHORT,
        "--set",
        "output.report_to=trackio",
    ]
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_TRAIN, str(root), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "blocked connection" not in done.stderr
    [database] = database_dir.glob("*.db")
    logged = [json.loads(m) for (m,) in sqlite3.connect(database).execute("select metrics from metrics")]
    cfg = load_config(str(out / "config.yaml"))
    for name in cfg.rewards:
        assert [m["train/global_step"] for m in logged if f"train/rewards/{name}/mean" in m] == list(
            range(1, STEPS + 1)
        ), name
