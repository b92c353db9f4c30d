"""Shared fixtures: the tiny offline assets are built once per test session (about 25 s)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import offline  # noqa: E402
import train_grpo  # noqa: E402
from recipe.tiny import torch_threads


def train_tiny(tiny_assets: Path, out: Path, *args: str) -> int:
    """train_grpo.main() on the tiny model and data, writing to ``out``; ``args`` are extra CLI words."""
    return train_grpo.main([
        "--config", str(ROOT / "configs" / "tiny-cpu.yaml"),
        "--set", f"model.name={tiny_assets / 'model'}",
        "--set", f"data.dataset={tiny_assets / 'data' / 'train.jsonl'}",
        "--set", f"output.dir={out}",
        *args,
    ])


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


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU with the pinned GPU stack (unsloth, vLLM); skipped elsewhere")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
