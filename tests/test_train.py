"""End to end on the tiny model: main() trains, logs, saves a loadable adapter, and resumes after a crash."""

import json
import math
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

import rewards
import train_grpo
from conftest import TRAINED_STEPS as STEPS
from conftest import train_like_trained_run as run
from recipe import runs
from recipe.callbacks import SampleLog, health_warnings, make_callbacks, progress_numbers
from recipe.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_leaves_every_output(trained_run):
    for name in [
        "config.yaml",
        "metrics.jsonl",
        "samples.jsonl",
        "adapter/adapter_model.safetensors",
        "adapter/tokenizer.json",
        "checkpoint-2",
        "checkpoint-4",
        "plots/rewards.png",
    ]:
        assert (trained_run / name).exists(), name


def test_no_card_in_a_run_names_a_model_of_none(trained_run):
    # Regression: TRL's boilerplate card in output.dir read "fine-tuned version of [None]".
    cards = list(trained_run.rglob("README.md"))
    assert (trained_run / "adapter" / "README.md") in cards
    assert [card for card in cards if "[None]" in card.read_text()] == []


def rebuilt_on_resume(trained_run: Path, tiny_assets: Path, tmp_path: Path) -> Path:
    """The shared run as a kill while saving adapter/ leaves it; --resume rebuilds adapter/ from checkpoint-4."""
    out = tmp_path / "rebuilt"
    shutil.copytree(trained_run, out, ignore=shutil.ignore_patterns("adapter"))
    assert run(tiny_assets, out, "--resume") == 0
    return out


@pytest.mark.parametrize(
    "made",
    [lambda trained_run, tiny_assets, tmp_path: trained_run, rebuilt_on_resume],
    ids=["saved-at-the-end", "rebuilt-on-resume-of-a-finished-run"],
)
def test_the_adapter_carries_the_recipes_card(trained_run, tiny_assets, tmp_path, capsys, made):
    # Regression: the rebuilt adapter/ kept PEFT's template card from the checkpoint ("[More Information Needed]").
    out = made(trained_run, tiny_assets, tmp_path)
    card = (out / "adapter" / "README.md").read_text()
    assert "## Training" in card and f"| steps | {STEPS} of max_steps {STEPS} |" in card
    assert "[More Information Needed]" not in card
    assert ("`training_args.bin`" in card) == (out / "adapter" / "training_args.bin").is_file()
    assert runs.adapter_complete(out)


@pytest.mark.parametrize("name", list(rewards.REWARDS))
def test_metrics_hold_every_reward_at_every_step(trained_run, name):
    steps = [row for row in read_jsonl(trained_run / "metrics.jsonl") if "reward" in row]
    assert [row["step"] for row in steps] == list(range(1, STEPS + 1))
    assert all(0 <= row[f"rewards/{name}/mean"] <= rewards.MAX_REWARD[name] for row in steps)


def best_reward(run: Path) -> float:
    return sum(
        weight * rewards.MAX_REWARD[name] for name, weight in load_config(str(run / "config.yaml")).rewards.items()
    )


def completion_length(run: Path) -> float:
    return load_config(str(run / "config.yaml")).training.max_completion_length


def learning_rate(run: Path) -> float:
    return load_config(str(run / "config.yaml")).training.learning_rate


# Each metric's range: a NaN or an infinity is a float too, and a share outside [0, 1] or a step that took no
# time is a metric computed wrongly, not training health. Bounds that depend on the run read its saved config.
@pytest.mark.parametrize(
    "key, low, high",
    [
        pytest.param("reward", lambda run: 0.0, best_reward, id="reward-within-the-weighted-best"),
        pytest.param("reward_std", lambda run: 0.0, best_reward, id="reward-std"),
        pytest.param("completions/mean_length", lambda run: 1.0, completion_length, id="mean-length"),
        pytest.param("completions/clipped_ratio", lambda run: 0.0, lambda run: 1.0, id="clipped-ratio-a-share"),
        # TRL's KL estimate, exp(x) - x - 1 per token, is never negative.
        pytest.param("kl", lambda run: 0.0, lambda run: math.inf, id="kl"),
        pytest.param("learning_rate", lambda run: 0.0, learning_rate, id="learning-rate-up-to-the-configs"),
    ],
)
def test_metrics_hold_training_health(trained_run, key, low, high):
    rows = [row for row in read_jsonl(trained_run / "metrics.jsonl") if "reward" in row]
    values = [row[key] for row in rows]
    assert values and all(isinstance(v, float) and math.isfinite(v) for v in values), values
    assert all(low(trained_run) <= v <= high(trained_run) for v in values), values


def test_metrics_hold_a_step_time_for_every_step(trained_run):
    rows = [row for row in read_jsonl(trained_run / "metrics.jsonl") if "reward" in row]
    # A step takes time: zero or less is a clock read wrongly, a NaN a division by nothing.
    assert all(isinstance(row["step_time"], float) and 0 < row["step_time"] < math.inf for row in rows), rows


PLANNED_STEPS = [
    # A last, partial step batch is still a step (TRL's dataloader keeps it): 400 prompts at 3 a step is 134.
    pytest.param(400, 3, -1, 1.0, (134, 1.0), id="an-epoch-ends-with-a-partial-step"),
    pytest.param(9, 3, -1, 1.0, (3, 1.0), id="an-epoch-of-whole-steps"),
    pytest.param(400, 3, -1, 2.0, (268, 2.0), id="two-epochs"),
    # Fractional epochs round the product up, as transformers does: 134 * 0.3 = 40.2 is 41 steps.
    pytest.param(400, 3, -1, 0.3, (41, 0.3), id="a-fraction-of-an-epoch"),
    # Rounding each epoch first matters here: 3 steps an epoch, not 2.5, so 2.5 epochs is 8 steps, not 7 or 5.
    pytest.param(10, 4, -1, 2.5, (8, 2.5), id="partial-steps-and-fractional-epochs"),
    # max_steps set: it is the plan, and the epochs are what it covers.
    pytest.param(400, 3, 50, 1.0, (50, 50 / 134), id="max-steps-passes-through"),
]


@pytest.mark.parametrize("n_prompts, prompts_per_step, max_steps, epochs, expected", PLANNED_STEPS)
def test_planned_steps(n_prompts, prompts_per_step, max_steps, epochs, expected):
    training = types.SimpleNamespace(prompts_per_step=prompts_per_step, max_steps=max_steps, num_train_epochs=epochs)
    steps, covered = train_grpo.planned_steps(types.SimpleNamespace(training=training), n_prompts)
    assert steps == expected[0] and covered == pytest.approx(expected[1])


def test_samples_log_every_n_steps_with_each_reward(trained_run):
    rows = read_jsonl(trained_run / "samples.jsonl")
    assert sorted({row["step"] for row in rows}) == [2, 4]
    for row in rows:
        assert {"question", "gold", "response", "extracted", *rewards.REWARDS} <= set(row)
        assert row["correctness"] == (2.0 if rewards.is_correct(row["response"], row["gold"]) else 0.0)


def test_saved_config_is_the_resolved_one(trained_run):
    cfg = load_config(str(trained_run / "config.yaml"))
    assert cfg.output.dir == str(trained_run) and cfg.training.max_steps == STEPS


def test_lora_weights_changed(trained_run):
    from safetensors.torch import load_file

    tensors = load_file(str(trained_run / "adapter" / "adapter_model.safetensors"))
    lora_b = {name: t for name, t in tensors.items() if "lora_B" in name}
    assert lora_b, "no LoRA B matrices saved"
    # PEFT starts every B at zero, so any non-zero entry is a trained update.
    assert any(t.abs().max() > 0 for t in lora_b.values())


def test_adapter_reloads_with_plain_peft_and_changes_the_model(trained_run, tiny_assets):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(trained_run / "adapter"))
    ids = tokenizer("Tom has 3 apples.", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(str(tiny_assets / "model"))
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(trained_run / "adapter"))
        after = tuned(ids).logits
    assert not torch.allclose(before, after)


def test_dry_run_loads_no_model_and_writes_nothing(tiny_assets, tmp_path, capsys):
    out = tmp_path / "dry"
    assert run(tiny_assets, out, "--dry-run") == 0
    printed = capsys.readouterr().out
    assert "400 prompts kept of 400" in printed and f"plan {STEPS} steps" in printed
    # Regression: it printed "config (saved to ...)" and saved nothing.
    assert "config (dry run: not saved):" in printed and "saved to" not in printed
    assert not out.exists()


def test_the_plan_prints_before_the_config_and_the_config_takes_a_line_a_section(tiny_assets, tmp_path, capsys):
    # Regression: about 70 lines of YAML printed before the five lines a user reads.
    assert run(tiny_assets, tmp_path / "dry", "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert [line.split()[0] for line in lines[first : first + 5]] == ["model", "data", "plan", "split", "tracking"]
    config = lines.index("config (dry run: not saved):")
    assert config > first
    sections = [line.split(":")[0].strip() for line in lines[config + 1 : config + 8]]
    assert sections == ["model", "vllm", "lora", "data", "rewards", "training", "output"]


@pytest.mark.parametrize(
    "logs, shown",
    [
        pytest.param(
            {"reward": 1.2345, "rewards/correctness/mean": 0.5, "completions/mean_length": 87.4, "step_time": 0.61},
            {"reward": "1.23", "correct": "25%", "len": "87", "s/step": "0.61"},
            # Regression: the bar showed correct=0.5, the mean of a 0-or-2 reward, for 25% correct.
            id="correct-is-a-share-of-answers",
        ),
        pytest.param({"rewards/correctness/mean": 2.0}, {"correct": "100%"}, id="all-correct"),
        pytest.param({"loss": 0.01, "grad_norm": 0.2}, {}, id="a-log-without-rewards-shows-nothing"),
    ],
)
def test_progress_bar_numbers(logs, shown):
    assert progress_numbers(logs) == shown


def test_progress_bar_shows_a_step_when_it_is_logged(tmp_path, capsys):
    from types import SimpleNamespace

    bar, *_ = make_callbacks(tmp_path, SampleLog(tmp_path / "samples.jsonl", 1))[1:]
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    bar.on_train_begin(None, state, None)
    state.global_step = 1
    bar.on_step_end(None, state, None)
    capsys.readouterr()
    bar.on_log(None, state, None, logs={"reward": 3.0, "rewards/correctness/mean": 1.0})
    # Regression: the postfix waited for the next step's redraw, so the bar showed the step before.
    assert "correct=50%" in capsys.readouterr().err
    bar.on_train_end(None, state, None)


class Crash(Exception):
    pass


@pytest.mark.parametrize("spg", [1, 2], ids=["generate-every-step", "generate-for-2-steps"])
def test_killed_run_resumes_to_the_same_step_count(tiny_assets, tmp_path, spg):
    from transformers import TrainerCallback

    class CrashAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == STEPS:
                raise Crash

    spg_set = ("--set", f"training.steps_per_generation={spg}")
    with pytest.raises(Crash):
        run(tiny_assets, tmp_path, *spg_set, callbacks=[CrashAtStep()])
    assert not (tmp_path / "checkpoint-4").exists() and (tmp_path / "checkpoint-2").exists()

    assert run(tiny_assets, tmp_path, *spg_set) == 2, "a rerun without --resume must refuse to overwrite"
    assert run(tiny_assets, tmp_path, *spg_set, "--resume") == 0

    state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    logged = [row["step"] for row in read_jsonl(tmp_path / "metrics.jsonl") if "reward" in row]
    # Rewards are logged on generation steps: every step, or every spg-th.
    assert logged == list(range(1, STEPS + 1, spg)), (
        "steps logged before the crash but after the checkpoint are logged once"
    )
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


HEALTHY = {"reward": 1.0, "completions/clipped_ratio": 0.1, "frac_reward_zero_std": 0.2}


@pytest.mark.parametrize(
    "rows, expected",
    [
        pytest.param([HEALTHY] * 10, [], id="healthy"),
        pytest.param([{**HEALTHY, "completions/clipped_ratio": 1.0}] * 9, [], id="too-few-steps-to-judge"),
        pytest.param(
            [{**HEALTHY, "completions/clipped_ratio": 1.0}] * 10, ["training.max_completion_length"], id="all-truncated"
        ),
        pytest.param([{**HEALTHY, "frac_reward_zero_std": 1.0}] * 10, ["no advantage"], id="no-reward-variance"),
        pytest.param([{**HEALTHY, "frac_reward_zero_std": 1.0}] * 9 + [HEALTHY], [], id="one-good-step-clears-it"),
    ],
)
def test_health_warnings(rows, expected):
    found = health_warnings(rows)
    assert len(found) == len(expected)
    assert all(fragment in message for fragment, message in zip(expected, found))


class FakeFastLanguageModel:
    """Records what Unsloth's loader is asked for; the GPU test loads the real one."""

    calls: list[dict] = []

    @classmethod
    def from_pretrained(cls, **kwargs):
        cls.calls.append(kwargs)
        return types.SimpleNamespace(generation_config=types.SimpleNamespace()), None

    @staticmethod
    def get_peft_model(model, **kwargs):
        return model


@pytest.mark.parametrize(
    "overrides, expected",
    [
        # config.yaml: 1 prompt x 6 completions, generated for 4 steps at once.
        pytest.param([], 24, id="default-generation-batch"),
        pytest.param(["training.steps_per_generation=1", "training.prompts_per_step=2"], 12, id="smaller-batch"),
        pytest.param(["model.fast_inference=false"], None, id="no-vllm-no-engine-keys"),
    ],
)
def test_unsloth_sizes_vllm_to_the_generation_batch_as_trl_does(monkeypatch, overrides, expected):
    assert unsloth_load_kwargs(monkeypatch, overrides).get("max_num_seqs") == expected


def unsloth_load_kwargs(monkeypatch, overrides) -> dict:
    from recipe import backend

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FakeFastLanguageModel))
    monkeypatch.setattr(FakeFastLanguageModel, "calls", [])
    monkeypatch.setattr(backend, "stop_token_ids", lambda tokenizer: [0])
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "config.yaml"), overrides)
    backend.load_model(cfg, "unsloth", None)
    return FakeFastLanguageModel.calls[0]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        pytest.param(
            [],
            {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY", "cudagraph_specialize_lora": False},
            id="default-no-compile-keeps-decode-graphs",
        ),
        # Unsloth's own choice: torch.compile with piecewise and full CUDA graphs, specialised by LoRA.
        pytest.param(["model.vllm_compile=true"], None, id="true-leaves-unsloth-choice"),
        pytest.param(["model.vllm_compile=false", "model.fast_inference=false"], None, id="no-vllm-no-engine-keys"),
    ],
)
def test_vllm_compile_reaches_unsloths_engine(monkeypatch, overrides, expected):
    assert unsloth_load_kwargs(monkeypatch, overrides).get("compilation_config") == expected


VLLM_NO_KV_CACHE = (
    "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine "
    "(this flag also controls CPU memory reservation on the CPU backend, despite its name). See https://docs.vllm.ai/"
)


@pytest.mark.parametrize(
    "overrides, error, says, not_says",
    [
        # Regression, 2026-12-04: a 7B in 16-bit under a 24 GiB cap failed in vLLM's start and was told to
        # "check the model folder or hub id", with vLLM's message cut mid-word.
        pytest.param(
            [],
            RuntimeError(VLLM_NO_KV_CACHE),
            ["gpu_memory_utilization=0.35", "raise model.gpu_memory_utilization", "set model.load_in_4bit: true"],
            ["hub id", "See http"],
            id="vllm-share-too-small",
        ),
        pytest.param(
            ["model.load_in_4bit=true"],
            RuntimeError(VLLM_NO_KV_CACHE),
            ["raise model.gpu_memory_utilization, pick a smaller model"],
            ["load_in_4bit: true"],
            id="vllm-share-too-small-already-4bit",
        ),
        pytest.param(
            [],
            RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            ["ran out of memory", "lower model.gpu_memory_utilization", "set model.load_in_4bit: true"],
            ["hub id"],
            id="cuda-oom",
        ),
        pytest.param(
            [],
            OSError("model.safetensors: header too large"),
            ["could not load the weights", "header too large", "check the model folder or hub id"],
            ["memory"],
            id="bad-weights",
        ),
    ],
)
def test_a_model_that_does_not_load_gets_the_fix_for_its_cause(monkeypatch, overrides, error, says, not_says):
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "config.yaml"), overrides)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(train_grpo.backends, "load_model", fail)
    with pytest.raises(train_grpo.RecipeError) as raised:
        train_grpo.load_model(cfg, "unsloth", None)
    message = str(raised.value)
    assert "\n" not in message
    for text in says:
        assert text in message
    for text in not_says:
        assert text not in message


def test_gpu_tests_on_a_cpu_say_they_need_a_gpu():
    # Regression: they said "run `python offline.py smollm2` first", which would not have helped.
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_gpu.py")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all(line.endswith("needs a CUDA GPU") for line in skipped), done.stdout
