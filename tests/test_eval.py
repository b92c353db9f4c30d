"""eval_grpo.py on the tiny model: scores, outputs, one-line errors before loading, --ask, --merge and the vLLM wiring."""

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

import eval_grpo
import rewards
from conftest import copy_run, files, interrupt_at
from recipe.config import load_config
from recipe.data import chat_prompt, load_tokenizer, stop_token_ids
from recipe.errors import RecipeError

ROOT = Path(__file__).resolve().parents[1]
LIMIT, NEW_TOKENS = 4, 32
STRICT = "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def amplify(adapter: Path, factor: float) -> None:
    """Scale the LoRA update so it surely changes greedy answers: four tiny GRPO steps may leave them all alone."""
    from safetensors.torch import load_file, save_file

    from recipe import runs

    path = adapter / "adapter_model.safetensors"
    tensors = load_file(str(path))
    save_file({name: t * factor if "lora_B" in name else t for name, t in tensors.items()}, str(path))
    runs.write_marker(adapter, runs.saved_step(adapter))  # changed on purpose: marked whole again


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory) -> Path:
    """A copy of the shared run, amplified: adapter/, config.yaml (the resolved config eval_grpo.py defaults to)."""
    out = copy_run(trained_run, tmp_path_factory.mktemp("eval") / "run")
    amplify(out / "adapter", 100.0)
    return out


def evaluate_args(run: Path, tiny_assets: Path, *extra: str) -> list[str]:
    return [
        "--adapter",
        str(run / "adapter"),
        "--dataset",
        str(tiny_assets / "data" / "test.jsonl"),
        "--max-new-tokens",
        str(NEW_TOKENS),
        *extra,
    ]


@pytest.fixture(scope="module")
def evaluated(run, tiny_assets) -> Path:
    """The default results folder, <run>/eval, after scoring LIMIT test questions."""
    assert eval_grpo.main(evaluate_args(run, tiny_assets, "--limit", str(LIMIT))) == 0
    return run / "eval"


def test_eval_writes_summary_and_predictions_for_both_models(evaluated, run, tiny_assets):
    summary = json.loads((evaluated / "summary.json").read_text())
    rows = read_jsonl(evaluated / "predictions.jsonl")
    assert list(summary["models"]) == ["base", "trained"]
    assert {k: summary["settings"][k] for k in ("model", "adapter", "n", "max_new_tokens", "backend", "device")} == {
        "model": str(tiny_assets / "model"),
        "adapter": str(run / "adapter"),
        "n": LIMIT,
        "max_new_tokens": NEW_TOKENS,
        "backend": "trl",
        "device": "cpu",
    }
    assert [row["model"] for row in rows] == ["base"] * LIMIT + ["trained"] * LIMIT
    questions = [
        json.loads(line)["question"] for line in (tiny_assets / "data" / "test.jsonl").read_text().splitlines()[:LIMIT]
    ]
    assert [row["question"] for row in rows] == questions * 2
    for row in rows:
        assert set(row) == {"model", "question", "gold", "response", "extracted", "correct", "strict_format", "tokens"}
        assert 0 < row["tokens"] <= NEW_TOKENS
    assert [row["response"] for row in rows[:LIMIT]] != [row["response"] for row in rows[LIMIT:]], (
        "base and trained answered alike"
    )


@pytest.mark.parametrize("model", ["base", "trained"])
def test_summary_agrees_with_predictions(evaluated, model):
    summary = json.loads((evaluated / "summary.json").read_text())["models"][model]
    rows = [row for row in read_jsonl(evaluated / "predictions.jsonl") if row["model"] == model]
    assert summary == {
        "n": len(rows),
        "correct": sum(row["correct"] for row in rows),
        "accuracy": sum(row["correct"] for row in rows) / len(rows),
        "strict_format": sum(row["strict_format"] for row in rows) / len(rows),
        "mean_tokens": sum(row["tokens"] for row in rows) / len(rows),
        "unparsable": sum(rewards.parse_number(row["extracted"]) is None for row in rows),
    }
    assert all(row["correct"] == rewards.is_correct(row["response"], row["gold"]) for row in rows)


def test_ctrl_c_while_evaluating_keeps_the_earlier_results_whole(
    evaluated, run, tiny_assets, tmp_path, monkeypatch, capsys
):
    out = shutil.copytree(evaluated, tmp_path / "eval")
    before = files(out)
    interrupt_at(monkeypatch, eval_grpo, "hf_complete", 2)  # during the trained model's pass, the base's done
    assert eval_grpo.main(evaluate_args(run, tiny_assets, "--limit", str(LIMIT), "--out", str(out))) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "stopped; no half-written result or export was kept: run the same command again"
    assert "Traceback" not in err
    assert files(out) == before


def test_base_only_matches_the_base_of_the_side_by_side_run(evaluated, run, tiny_assets):
    assert eval_grpo.main(evaluate_args(run, tiny_assets, "--limit", str(LIMIT), "--base-only")) == 0
    alone = json.loads((run / "eval-base" / "summary.json").read_text())["models"]
    side_by_side = json.loads((evaluated / "summary.json").read_text())["models"]
    assert alone == {"base": side_by_side["base"]}
    # PEFT's disable_adapter gives the very base model: the same answers as a run that never loaded the adapter.
    base_rows = [row for row in read_jsonl(evaluated / "predictions.jsonl") if row["model"] == "base"]
    assert read_jsonl(run / "eval-base" / "predictions.jsonl") == base_rows


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.backend=auto"], "trl"),
        (["model.backend=trl"], "trl"),
        (["model.backend=unsloth"], "needs a CUDA GPU"),
    ],
    ids=["gpu-config-auto", "gpu-config-trl", "unsloth"],
)
def test_a_gpu_config_evaluates_on_a_cpu(overrides, expected):
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    cfg = load_config(str(ROOT / "config.yaml"), overrides)  # vLLM, on a CPU
    if expected == "trl":
        assert eval_grpo.eval_backend(cfg) == "trl"
    else:
        with pytest.raises(RecipeError, match=expected):
            eval_grpo.eval_backend(cfg)


@pytest.mark.parametrize(
    "response, gold, correct, strict, unparsable",
    [
        (STRICT, "7", True, True, False),
        (STRICT, "8", False, True, False),
        ("<reasoning>\nsum\n</reasoning>\n<answer>\n$1,000.\n</answer>", "1000", True, True, False),
        ("The total is <answer>7</answer> apples, I think.", "7", True, False, False),
        ("The answer is 7.", "7", False, False, True),
        ("<reasoning>\n3 + 4\n</reasoning>\n<answer>\nseven\n</answer>", "7", False, True, True),
        ("<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7", "7", False, False, True),
        ("", "7", False, False, True),
    ],
    ids=["strict-right", "strict-wrong", "dollars-and-commas", "loose-right", "no-tags", "words", "cut-off", "empty"],
)
def test_score_of_one_known_response(response, gold, correct, strict, unparsable):
    metrics = eval_grpo.score([response], [gold], [12])
    assert metrics == {
        "n": 1,
        "correct": int(correct),
        "accuracy": float(correct),
        "strict_format": float(strict),
        "mean_tokens": 12.0,
        "unparsable": int(unparsable),
    }


@pytest.mark.parametrize(
    "responses, golds, tokens, expected",
    [
        (
            [STRICT, STRICT, "7", "<answer>8</answer>"],
            ["7", "8", "7", "8"],
            [10, 20, 30, 40],
            {"n": 4, "correct": 2, "accuracy": 0.5, "strict_format": 0.5, "mean_tokens": 25.0, "unparsable": 1},
        ),
        (
            [],
            [],
            [],
            {"n": 0, "correct": 0, "accuracy": 0.0, "strict_format": 0.0, "mean_tokens": 0.0, "unparsable": 0},
        ),
    ],
    ids=["mixed", "empty"],
)
def test_score_of_a_known_set(responses, golds, tokens, expected):
    assert eval_grpo.score(responses, golds, tokens) == expected


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("Qwen/Qwen2.5-3B", "unsloth/Qwen2.5-3B-unsloth-bnb-4bit", True),
        ("Qwen/Qwen2.5-3B", "unsloth/qwen2.5-3b-bnb-4bit", True),
        ("Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-3B-Instruct", False),
        ("Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-1.5B", False),
        ("tests/../tests", str(ROOT / "tests"), True),
        ("tests", str(ROOT), False),
    ],
    ids=["unsloth-4bit-copy", "unsloth-lowercase", "instruct", "other-size", "same-folder", "other-folder"],
)
def test_model_key_matches_the_same_base(a, b, same, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert (eval_grpo.model_key(a) == eval_grpo.model_key(b)) is same


@pytest.mark.parametrize(
    "args, message",
    [
        (
            lambda run, assets: ["--adapter", str(run / "missing")],
            "does not exist: pass the adapter folder of a finished run",
        ),
        (lambda run, assets: ["--adapter", str(run)], "/adapter looks like one)"),
        (
            lambda run, assets: evaluate_args(run, assets, "--set", "model.name=Qwen/Qwen2.5-3B"),
            "but the config's model.name is Qwen/Qwen2.5-3B: pass the --config of that run",
        ),
        (
            lambda run, assets: evaluate_args(run, assets, "--set", f"model.name={assets / 'data'}"),
            "/data: pass the --config of that run",
        ),
        (
            lambda run, assets: evaluate_args(run, assets, "--set", "lora.r=4"),
            "has LoRA rank 8, above the config's lora.r=4",
        ),
        (
            lambda run, assets: ["--adapter", str(run / "adapter")],
            "is a single file, the one used for training: pass --dataset",
        ),
        (lambda run, assets: evaluate_args(run, assets, "--max-new-tokens", "320"), "leaves no room for a prompt"),
        (lambda run, assets: evaluate_args(run, assets, "--merge", str(run)), "exists and is not empty"),
        (
            lambda run, assets: evaluate_args(run, assets, "--merge", str(run / "config.yaml")),
            "config.yaml is a file: pass --merge a folder (it is created if missing)",
        ),
        (lambda run, assets: [], "pass --adapter"),
        # Regressions of issue 30: each was a traceback, or failed only after generating.
        (
            lambda run, assets: evaluate_args(damaged_adapter(run), assets),
            "has adapter_model.safetensors of 100 bytes, not the",
        ),
        (
            lambda run, assets: evaluate_args(run, assets, "--out", str(run / "config.yaml")),
            "--out {run}/config.yaml is a file: pass a folder",
        ),
        (
            lambda run, assets: evaluate_args(run, assets, "--out", str(other_results(run))),
            "holds the results of another evaluation: pass a new folder",
        ),
        (
            lambda run, assets: evaluate_args(run, assets, "--dataset", "openai/gsm8k"),
            "data.dataset=openai/gsm8k needs the Hugging Face Hub, and https://huggingface.co cannot be reached",
        ),
        # Regressions: a damaged base model folder was a traceback once the tokenizer had loaded.
        (
            lambda run, assets: base_only(run, assets, broken_base(run, assets, "truncated")),
            "/base-truncated has a damaged model.safetensors (Error while deserializing header",
        ),
        (
            lambda run, assets: base_only(run, assets, broken_base(run, assets, "wider")),
            "config.json's hidden_size=128 makes model.embed_tokens.weight [688, 128], but the weights hold [688, 64]",
        ),
        # Regressions: a --dataset folder said "BuilderConfig 'main' not found ... fix the file" for these.
        (
            lambda run, assets: evaluate_args(run, assets, "--dataset", str(dataset_folder(run, "empty", {}))),
            "/empty is a folder without data files (.jsonl, .json, .parquet, .csv)",
        ),
        (
            lambda run, assets: evaluate_args(
                run,
                assets,
                "--dataset",
                str(dataset_folder(run, "one-file", {"data.jsonl": assets / "data/test.jsonl"})),
            ),
            "has no split 'test' (its splits: train): set data.split (eval_grpo.py: --split) to one of them",
        ),
    ],
    ids=[
        "missing-adapter",
        "run-folder",
        "other-hub-base",
        "other-local-base",
        "rank-too-large",
        "training-file",
        "no-room",
        "merge-over-folder",
        "merge-onto-a-file",
        "no-adapter",
        "truncated-adapter",
        "out-is-a-file",
        "out-holds-another-evaluation",
        "hub-dataset-without-the-hub",
        "truncated-base-weights",
        "base-config-disagrees-with-weights",
        "dataset-folder-without-data-files",
        "dataset-folder-without-the-split",
    ],
)
def test_bad_input_is_one_line_and_loads_no_model(run, tiny_assets, args, message, capsys, monkeypatch, hub_down):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(eval_grpo, "load_hf", no_model)
    monkeypatch.setattr(eval_grpo, "vllm_generator", no_model)
    assert eval_grpo.main(args(run, tiny_assets)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(run=run) in err


def damaged_adapter(run: Path) -> Path:
    """A copy of the run whose adapter's weights were cut to 100 bytes after it was marked complete."""
    damaged = run.parent / "damaged"
    shutil.rmtree(damaged, ignore_errors=True)
    shutil.copytree(run / "adapter", damaged / "adapter")
    shutil.copy(run / "config.yaml", damaged)
    weights = damaged / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return damaged


def dataset_folder(run: Path, name: str, files: dict[str, Path]) -> Path:
    """A dataset folder beside the run holding a copy of each of ``files`` under its name."""
    folder = run.parent / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for file, source in files.items():
        shutil.copy(source, folder / file)
    return folder


def test_a_dataset_folder_of_plain_files_evaluates_its_test_split(run, tiny_assets, tmp_path):
    # Regression: the config's data.subset (GSM8K's 'main') was taken for one of the folder's configs, and failed.
    folder = dataset_folder(
        run,
        "plain-files",
        {"train.jsonl": tiny_assets / "data/train.jsonl", "test.jsonl": tiny_assets / "data/test.jsonl"},
    )
    args = evaluate_args(run, tiny_assets, "--dataset", str(folder), "--limit", "1", "--out", str(tmp_path / "eval"))
    assert eval_grpo.main(args) == 0
    settings = json.loads((tmp_path / "eval" / "summary.json").read_text())["settings"]
    assert (settings["dataset"], settings["split"], settings["n"]) == (str(folder), "test", 1)
    first_test_question = json.loads((tiny_assets / "data/test.jsonl").read_text().splitlines()[0])["question"]
    assert read_jsonl(tmp_path / "eval" / "predictions.jsonl")[0]["question"] == first_test_question


def base_only(run: Path, assets: Path, model: Path) -> list[str]:
    """The words that score ``model`` alone with the run's config: no adapter that names another base."""
    test = str(assets / "data" / "test.jsonl")
    return ["--config", str(run / "config.yaml"), "--base-only", "--dataset", test, "--set", f"model.name={model}"]


def broken_base(run: Path, assets: Path, how: str) -> Path:
    """A copy of the tiny base model, damaged ``how``: its weights cut in half ("truncated"), a config.json
    twice as wide as its weights ("wider"), or only a PyTorch pickle of random bytes ("pickled")."""
    model = run.parent / f"base-{how}"
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(assets / "model", model)
    weights = model / "model.safetensors"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "wider":
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "hidden_size": 2 * config["hidden_size"]}))
    elif how == "pickled":
        weights.unlink()
        (model / "pytorch_model.bin").write_bytes(bytes(range(256)) * 4)
    return model


@pytest.mark.parametrize(
    "how, message",
    [
        # A pickle cannot be checked without loading it: the load's own failure is the one line.
        pytest.param("pickled", "could not load the weights of model.name={model} (UnpicklingError: ", id="pickled"),
    ],
)
def test_a_base_model_that_fails_to_load_is_one_line(run, tiny_assets, capsys, how, message):
    model = broken_base(run, tiny_assets, how)
    assert eval_grpo.main([*base_only(run, tiny_assets, model), "--limit", "1"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message.format(model=model) in errors[0] and "Traceback" not in err, err[-2000:]
    assert errors[0].endswith("): check the model folder or hub id")


def other_results(run: Path) -> Path:
    folder = run.parent / "other-results"
    folder.mkdir(exist_ok=True)
    settings = {"adapter": "/elsewhere/adapter", "dataset": "openai/gsm8k", "split": "test"}
    (folder / "summary.json").write_text(json.dumps({"settings": settings, "models": {"base": {}, "trained": {}}}))
    return folder


def test_evaluations_of_other_adapters_or_datasets_never_overwrite_each_other(
    evaluated, run, trained_run, tiny_assets, capsys
):
    # Regression: evaluating a checkpoint replaced the adapter's eval/summary.json.
    kept = {p.name: p.read_bytes() for p in evaluated.iterdir()}
    checkpoint = run / "checkpoint-2"
    shutil.copytree(trained_run / "checkpoint-2", checkpoint)
    assert eval_grpo.main([*evaluate_args(run, tiny_assets, "--limit", "1"), "--adapter", str(checkpoint)]) == 0
    assert f"wrote {run / 'eval-checkpoint-2' / 'summary.json'}" in capsys.readouterr().out
    train = str(tiny_assets / "data" / "train.jsonl")
    assert eval_grpo.main(evaluate_args(run, tiny_assets, "--limit", "1", "--dataset", train)) == 0
    assert f"wrote {run / 'eval-train' / 'summary.json'}" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in evaluated.iterdir()} == kept
    assert json.loads((run / "eval-train" / "summary.json").read_text())["settings"]["dataset"] == train


@pytest.mark.parametrize(
    "code, said",
    [
        (28, ": the disk is full (0 bytes free): free space or pass --out another folder, then evaluate again"),
        (13, " (PermissionError: Permission denied; 0 bytes free): fix the permissions or pass --out another folder"),
    ],
    ids=["disk-full", "permission-denied"],
)
def test_a_failed_write_of_the_results_is_one_line_and_keeps_the_earlier_ones(
    run, tiny_assets, tmp_path, capsys, monkeypatch, code, said
):
    import os

    from recipe import jsonl, runs

    out = tmp_path / "results"
    args = evaluate_args(run, tiny_assets, "--limit", "1", "--out", str(out))
    assert eval_grpo.main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fails(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(jsonl.os, "fsync", fails)
    monkeypatch.setattr(runs, "free_space", lambda path: 0)
    capsys.readouterr()
    assert eval_grpo.main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.split("\n") if line.startswith("error: ")]
    assert errors == [f"error: could not write {out}{said}"]
    assert "Traceback" not in err and {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_ask_prints_the_base_then_the_trained_answer_of_eval(evaluated, run, tiny_assets, capsys):
    rows = read_jsonl(evaluated / "predictions.jsonl")
    question = rows[0]["question"]
    assert (
        eval_grpo.main(["--adapter", str(run / "adapter"), "--max-new-tokens", str(NEW_TOKENS), "--ask", question]) == 0
    )
    printed = capsys.readouterr().out
    base, trained = (
        next(r["response"].strip() for r in rows if r["model"] == m and r["question"] == question)
        for m in ("base", "trained")
    )
    assert (
        printed.index(f"=== {question}")
        < printed.index("--- base")
        < printed.index(base)
        < printed.index("--- trained")
    )
    assert trained in printed[printed.index("--- trained") :]


def test_merge_writes_a_plain_transformers_model_that_answers_like_the_adapter(run, tiny_assets, tmp_path, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = tmp_path / "merged"
    assert eval_grpo.main(["--adapter", str(run / "adapter"), "--merge", str(merged_dir)]) == 0
    assert "greedy output matches the adapter on 3 questions" in capsys.readouterr().out

    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    ids = tokenizer.apply_chat_template(
        chat_prompt("Tom has 3 apples and buys 4 more. How many now?"),
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_assets / "model"))
    with torch.no_grad():
        before = base(ids).logits
        after = merged(ids).logits
        adapted = PeftModel.from_pretrained(base, str(run / "adapter"))(ids).logits
    assert torch.allclose(after, adapted, atol=1e-5)
    assert not torch.allclose(after, before, atol=1e-5), "the adapter changed nothing, so this test proves nothing"
    generated = merged.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert generated.shape[1] > ids.shape[1]


class FakeVLLMModel:
    """What Unsloth's vLLM-backed PeftModel exposes to eval_grpo.py: load_lora and fast_generate."""

    def __init__(self):
        self.calls = []

    def load_lora(self, path):
        return f"lora:{path}"

    def fast_generate(self, texts, sampling_params, lora_request, use_tqdm):
        self.calls.append((texts, sampling_params, lora_request))
        tagged = "<reasoning>\nx\n</reasoning>\n<answer>\n7\n</answer>"
        completion = types.SimpleNamespace(
            text=tagged if lora_request else "no idea", token_ids=[1] * (5 if lora_request else 3)
        )
        return [types.SimpleNamespace(outputs=[completion]) for _ in texts]


def test_vllm_generator_sends_the_adapter_only_for_the_trained_pass(run, tiny_assets, monkeypatch):
    fake = FakeVLLMModel()
    loaded = []
    monkeypatch.setattr(eval_grpo.backends, "load_model_unsloth", lambda cfg: loaded.append(cfg) or (fake, None))
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=lambda **kw: kw))
    cfg = load_config(str(run / "config.yaml"))
    tokenizer = load_tokenizer(cfg.model.name)
    generate = eval_grpo.vllm_generator(cfg, run / "adapter", tokenizer, NEW_TOKENS)
    prompts = [chat_prompt("How many?")]

    assert generate(prompts, "base") == [("no idea", 3)]
    assert generate(prompts, "trained") == [("<reasoning>\nx\n</reasoning>\n<answer>\n7\n</answer>", 5)]
    assert [lora for _, _, lora in fake.calls] == [None, f"lora:{(run / 'adapter').resolve()}"]
    texts, params, _ = fake.calls[0]
    assert texts == [tokenizer.apply_chat_template(prompts[0], add_generation_prompt=True, tokenize=False)]
    assert params == {"temperature": 0, "max_tokens": NEW_TOKENS, "stop_token_ids": stop_token_ids(tokenizer)}
    assert loaded[0].model.fast_inference and loaded[0].lora.r == cfg.lora.r


@pytest.mark.parametrize(
    "adapter_config, message",
    [
        pytest.param("{not json", "is not valid JSON", id="truncated-config"),
        pytest.param(
            '{"base_model_name_or_path": 7, "r": 8}',
            "base_model_name_or_path is 7, not a model name",
            id="base-not-a-name",
        ),
    ],
)
def test_damaged_adapter_config_is_one_line(tmp_path, adapter_config, message, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(adapter_config)
    assert eval_grpo.main(["--adapter", str(adapter), "--config", str(ROOT / "configs" / "tiny-cpu.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
