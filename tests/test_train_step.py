"""bench/train_step.py: the training phase alone, its variants and its table (the harness, on a CPU)."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

import train_step  # noqa: E402

from recipe.config import load_config  # noqa: E402


@pytest.mark.parametrize(
    "variant, dtype", [("fp32-lora", torch.float32), ("bf16-lora", torch.bfloat16), ("graph", torch.float32)]
)
def test_each_variant_stores_the_lora_weights_in_its_dtype_without_copying(variant, dtype):
    weights = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3, 4))]
    dtypes = train_step.Dtypes(weights)
    dtypes.use("bf16-lora")
    dtypes.use(variant)
    stored = dtypes.bf16 if dtype == torch.bfloat16 else dtypes.fp32
    assert all(w.dtype == dtype and w.data_ptr() == s.data_ptr() for w, s in zip(weights, stored))


@pytest.mark.parametrize("rounds, warmup", [(3, 2), (1, 0), (0, 1)], ids=["three-rounds", "no-warmup", "warmup-only"])
def test_the_variants_take_turns_so_drift_falls_on_all_alike(rounds, warmup):
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = train_step.measure(
        runs, rounds, lambda: None, setup=lambda name: calls.append(f"set {name}"), warmup=warmup
    )
    assert calls == ["set a", "a", "set b", "b", "set c", "c"] * (rounds + warmup)
    assert {name: len(each) for name, each in times.items()} == dict.fromkeys("abc", rounds)


@pytest.mark.parametrize(
    "overrides, rows, tokens",
    [([], 6, 260), (["training.prompts_per_step=2", "training.max_completion_length=100"], 12, 160)],
    ids=["default-step", "two-prompts-shorter-completions"],
)
def test_the_batch_is_one_optimizer_steps_rows_at_the_bench_length(overrides, rows, tokens):
    cfg = load_config(str(ROOT / "config.yaml"), overrides)
    ids, mask = train_step.step_batch(cfg, 60, 1000, "cpu")
    again, _ = train_step.step_batch(cfg, 60, 1000, "cpu")
    assert ids.shape == mask.shape == (rows, tokens) and bool(mask.all()) and torch.equal(ids, again)


def test_the_packed_forward_is_one_stream_with_positions_restarting_per_row():
    ids = torch.arange(12).reshape(3, 4)
    inputs = train_step.packed(ids)
    assert inputs["input_ids"].tolist() == [list(range(12))]
    assert inputs["position_ids"].tolist() == [[0, 1, 2, 3] * 3]
    assert inputs["packed_seq_lengths"].tolist() == [4, 4, 4] and inputs["packed_seq_lengths"].dtype == torch.int32


@pytest.mark.parametrize("loaded", [torch.float32, torch.bfloat16], ids=["fp32-as-unsloth-trains", "bf16-loaded"])
def test_the_loaded_dtype_is_recorded_and_the_fp32_variant_is_fp32_either_way(loaded):
    dtypes = train_step.Dtypes([torch.nn.Parameter(torch.randn(2, 2).to(loaded))])
    dtypes.use("fp32-lora")
    assert dtypes.loaded == str(loaded).removeprefix("torch.") and dtypes.weights[0].dtype == torch.float32


def failed_capture():
    try:
        try:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        finally:
            raise RuntimeError("operation failed due to a previous error during capture")
    except RuntimeError as error:
        return error


@pytest.mark.parametrize(
    "error, said",
    [
        (failed_capture(), "RuntimeError: operation not permitted when stream is capturing"),
        (AssertionError(), "AssertionError: "),
        (ValueError("x" * 400), "ValueError: " + "x" * 288),
    ],
    ids=["the-first-error-not-the-capture-end", "no-message", "cut-to-300"],
)
def test_a_failure_is_told_by_its_first_cause_in_one_line(error, said):
    assert train_step.why(error) == said


def test_a_graph_needs_a_cuda_gpu_and_says_so():
    assert train_step.capture(lambda: None, cuda=False) == (None, "needs a CUDA GPU")


def test_a_variant_that_could_not_run_shows_why_in_the_table():
    summary = {
        "date": "d",
        "device": "GPU",
        "rows": 6,
        "tokens": 260,
        "forward": "packed",
        "model": "m",
        "lora_dtype_as_loaded": "float32",
        "rounds": 2,
        "variants": [
            train_step.row(
                "fp32-lora", [0.2, 0.3], {"kernel_s_per_step": 0.07, "launches_per_step": 6404.0, "syncs_per_step": 0.0}
            ),
            train_step.row("graph", [], {}, note="not captured: operation not permitted when stream is capturing"),
        ],
    }
    lines = train_step.markdown(summary).splitlines()
    assert "| fp32-lora | 0.25 | 0.2 | 0.07 | 6404.0 | 0.0 |  |" in lines
    assert "| graph | - | - | - | - | - | not captured: operation not permitted when stream is capturing |" in lines
    assert not any("beside" in line or "in turns with the graph" in line for line in lines)


def test_a_captured_graph_is_shown_beside_the_eager_step_timed_in_its_turns():
    summary = {"date": "d", "device": "GPU", "rows": 6, "tokens": 260, "forward": "packed", "model": "m", "rounds": 2}
    summary["lora_dtype_as_loaded"] = "float32"
    summary["variants"] = [train_step.row("graph", [0.08, 0.09], {"launches_per_step": 1.0})]
    summary["fp32_lora_beside_graph_s_median"] = 0.231
    text = train_step.markdown(summary)
    assert "| graph | 0.085 | 0.08 | - | 1.0 | - |  |" in text
    assert text.endswith("fp32-lora in turns with the graph's rounds: 0.231 s a step.\n")


def test_a_smoke_run_trains_both_eager_variants_on_the_tiny_model(tiny_assets, tmp_path, monkeypatch):
    import bench

    shutil.copytree(tiny_assets, tmp_path / "tiny")
    monkeypatch.setattr(bench, "WORK", tmp_path)  # offline.py finds the tiny model built there
    out = tmp_path / "step.json"
    monkeypatch.setattr(sys, "argv", ["train_step.py", "--smoke", "--rounds", "2", "--out", str(out)])
    assert train_step.main() == 0
    summary = json.loads(out.read_text())
    variants = {v["variant"]: v for v in summary["variants"]}
    assert summary["backend"] == "trl" and summary["lora_tensors"] > 0 and summary["lora_dtype_as_loaded"] == "float32"
    assert (tmp_path / "train-step-bf16-lora.json").exists()
    assert all(variants[v]["rounds"] == 2 and variants[v]["s_median"] > 0 for v in ("fp32-lora", "bf16-lora"))
    assert variants["graph"]["note"] == "not captured: needs a CUDA GPU"
    assert out.with_suffix(".md").read_text() == train_step.markdown(summary)


@pytest.mark.parametrize("variant, dtype", [("fp32-lora", torch.float32), ("bf16-lora", torch.bfloat16)])
def test_a_step_of_each_variant_leaves_gradients_of_its_dtype(tiny_assets, variant, dtype):
    from recipe import backend

    cfg = load_config(str(ROOT / "config.yaml"), [f"model.name={tiny_assets / 'model'}", "model.fast_inference=false"])
    model = backend.load_model_trl(cfg, None)[0]
    ids, mask = train_step.step_batch(cfg, 8, model.config.vocab_size, "cpu")
    dtypes = train_step.Dtypes(train_step.lora_weights(model))
    dtypes.use(variant)
    train_step.make_step(model, ids, mask, unsloth=False)()
    assert all(w.grad is not None and w.grad.dtype == dtype for w in dtypes.weights)
