"""Shared fixtures, each built once per test session: the tiny offline assets (about 25 s) and one tiny training run."""

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import offline  # noqa: E402
import train_grpo  # noqa: E402
from recipe.config import config_to_yaml, load_config  # noqa: E402
from recipe.tiny import torch_threads  # noqa: E402

# The shared run: checkpoints and samples every 2 of 4 steps, short completions to keep it quick.
TRAINED_STEPS = 4
TRAINED_RUN = (
    "--set",
    f"training.max_steps={TRAINED_STEPS}",
    "--set",
    "training.max_completion_length=32",
    "--set",
    "output.save_steps=2",
    "--set",
    "output.sample_every=2",
)


def tiny_cli(tiny_assets: Path, out: Path, *args: str) -> list[str]:
    """train_grpo.py's words for the tiny model and data, writing to ``out``; ``args`` are extra words."""
    return [
        "--config",
        str(ROOT / "configs" / "tiny-cpu.yaml"),
        "--set",
        f"model.name={tiny_assets / 'model'}",
        "--set",
        f"data.dataset={tiny_assets / 'data' / 'train.jsonl'}",
        "--set",
        f"output.dir={out}",
        *args,
    ]


def train_tiny(tiny_assets: Path, out: Path, *args: str, callbacks=()) -> int:
    """train_grpo.main() on the tiny model and data, writing to ``out``; ``args`` are extra CLI words."""
    return train_grpo.main(
        tiny_cli(tiny_assets, out, *args),
        callbacks=callbacks,
    )


def train_like_trained_run(tiny_assets: Path, out: Path, *extra: str, callbacks=()) -> int:
    """The shared run's settings (TRAINED_RUN) into ``out``: a resume there ends where trained_run ended."""
    return train_tiny(tiny_assets, out, *TRAINED_RUN, *extra, callbacks=callbacks)


def lora(folder: Path, adapter: str = "") -> dict:
    """The adapter weights saved in ``folder`` (or its ``adapter`` subfolder)."""
    from safetensors.torch import load_file

    return load_file(str(folder / adapter / "adapter_model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes: what a user keeps, to compare before and after."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def interrupt_at(monkeypatch, owner, name: str, call: int) -> None:
    """Ctrl-C on the ``call``-th call of owner.name, the calls before it run as they were."""
    real, calls = getattr(owner, name), []

    def interrupted(*args, **kwargs):
        calls.append(name)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The tiny model on one torch thread: torch_threads says why."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> Path:
    """``<dir>/model`` (tiny Qwen2 + tokenizer) and ``<dir>/data/{train,test}.jsonl``."""
    out = tmp_path_factory.mktemp("tiny")
    offline.main(["tiny", "--out", str(out)])
    return out


@pytest.fixture(scope="session")
def trained_run(tiny_assets, tmp_path_factory) -> Path:
    """The output folder of one tiny TRAINED_RUN, shared by every test that only reads it: copy_run it to write."""
    out = tmp_path_factory.mktemp("trained")
    assert train_like_trained_run(tiny_assets, out) == 0
    return out


def copy_run(run: Path, dst: Path) -> Path:
    """A copy of ``run`` without its checkpoints, its saved config pointing at the copy, as if trained there."""
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("checkpoint-*"))
    cfg = load_config(str(dst / "config.yaml"))
    cfg.output.dir = str(dst)
    (dst / "config.yaml").write_text(config_to_yaml(cfg))
    return dst


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA GPU with the pinned GPU stack (unsloth, vLLM); skipped elsewhere"
    )


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    # A skipif, since pytest weighs every skipif mark (a test module's own among them) before any skip mark.
    skip = pytest.mark.skipif(True, reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            # First, so that a CPU names the missing GPU, not a missing asset a GPU run would also need.
            item.add_marker(skip, append=False)


@pytest.fixture
def hub_down(monkeypatch, tmp_path) -> Path:
    """The Hugging Face Hub does not answer and its local cache (returned, empty) is a fresh folder."""
    from huggingface_hub import constants

    from recipe import preflight

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(preflight, "hub_reachable", lambda endpoint: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # so that the value the cache switch writes is undone
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    return cache
