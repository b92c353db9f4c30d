"""Teach a small base model to reason with GRPO and rule-based rewards (DeepSeek-R1's idea) on one GPU.

    python train_grpo.py --config config.yaml
    python train_grpo.py --config config.yaml --set training.max_steps=500 --set output.dir=runs/short
    python train_grpo.py --config config.yaml --resume        # continue from the latest checkpoint
    python train_grpo.py --config config.yaml --dry-run       # validate, build the data, load no model

Offline on a CPU, with a tiny model and problems this project builds itself (about a minute):

    python offline.py tiny && python train_grpo.py --config configs/tiny-cpu.yaml

The script reads top to bottom: config (typed, validated before anything heavy loads), data
(GSM8K prompts in chat form), model (Unsloth + vLLM on a GPU, or plain transformers + PEFT),
trainer (TRL's GRPOTrainer with the rewards of rewards.py) and main().
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import math
import os
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import rewards

# Stop the hub client from retrying for minutes when it cannot be reached; a local path never needs it.
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")

LORA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LOCAL_DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class RecipeError(Exception):
    """Bad input (config, data, paths): main() prints it as one line and exits with status 2."""


@dataclass
class ModelConfig:
    name: str = "Qwen/Qwen2.5-3B"
    backend: str = "auto"
    max_seq_length: int = 512
    load_in_4bit: bool = False
    fast_inference: bool = True
    gpu_memory_utilization: float = 0.6
    compile: bool = False


@dataclass
class LoraConfig:
    r: int = 32
    alpha: int = 32
    target_modules: list[str] = field(default_factory=lambda: list(LORA_PROJECTIONS))
    gradient_checkpointing: bool | str = "unsloth"


@dataclass
class DataConfig:
    dataset: str = "openai/gsm8k"
    subset: str | None = "main"
    split: str = "train"
    question_field: str = "question"
    answer_field: str = "answer"
    max_prompt_length: int = 256
    limit: int | None = None


@dataclass
class TrainingConfig:
    max_steps: int = 1000
    num_train_epochs: float = 1.0
    prompts_per_step: int = 1
    num_generations: int = 6
    steps_per_generation: int = 4
    max_completion_length: int = 200
    temperature: float = 0.9
    beta: float = 0.04
    loss_type: str = "grpo"
    learning_rate: float = 5e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    weight_decay: float = 0.1
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    optim: str = "paged_adamw_8bit"
    max_grad_norm: float = 0.1
    seed: int = 3407


@dataclass
class OutputConfig:
    dir: str = "outputs/qwen2.5-3b-grpo"
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int = 3
    sample_every: int = 10
    resume: str = "never"


def default_rewards() -> dict[str, float]:
    return {name: 1.0 for name in rewards.REWARDS}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rewards: dict[str, float] = field(default_factory=default_rewards)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def _closest(name: str, valid: typing.Iterable[str], prefix: str = "") -> str:
    match = difflib.get_close_matches(name, list(valid), n=1)
    return f"did you mean '{prefix}{match[0]}'?" if match else f"valid keys: {', '.join(valid)}"


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` checked against the annotation ``kind``; ints are accepted where floats are expected."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option, key)
            except RecipeError:
                continue
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise RecipeError(f"{key}: expected {names}, got {value!r}")
    if kind is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, list):
            return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {_coerce(k, args[0], key): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 5e-6 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is bool or kind is int or kind is str:
        if type(value) is kind:
            return value
    kind_name = "null" if kind is type(None) else getattr(kind, "__name__", str(kind))
    raise RecipeError(f"{key}: expected {kind_name}, got {value!r}")


def _build(cls: type, values: dict, prefix: str) -> Any:
    """A dataclass from a YAML mapping; unknown keys and wrong types fail naming the key."""
    if not isinstance(values, dict):
        raise RecipeError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise RecipeError(f"unknown config key '{path}': {_closest(str(key), names, prefix)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{path}.")
        else:
            kwargs[key] = _coerce(value, kind, path)
    return cls(**kwargs)


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to the raw config mapping."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected section.key=value, e.g. training.max_steps=500")
    dotted, text = assignment.split("=", 1)
    *parents, leaf = dotted.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {assignment!r}: '{part}' is not a section")
    node[leaf] = yaml.safe_load(text)


def load_config(path: str | None, overrides: typing.Sequence[str] = ()) -> Config:
    raw: dict = {}
    if path is not None:
        config_path = Path(path)
        if not config_path.is_file():
            raise RecipeError(f"config file '{path}' not found: pass --config with the path of a YAML file")
        try:
            raw = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as error:
            raise RecipeError(f"config file '{path}' is not valid YAML: {str(error).splitlines()[0]}") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    config = _build(Config, raw, "")
    validate(config)
    return config


def validate(cfg: Config) -> None:
    """Reject impossible settings before any model, tokenizer or dataset is loaded."""
    m, lora, d, t, o = cfg.model, cfg.lora, cfg.data, cfg.training, cfg.output

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise RecipeError(message)

    check(m.backend in ("auto", "unsloth", "trl"), f"model.backend={m.backend!r}: use auto, unsloth or trl")
    check(0 < m.gpu_memory_utilization < 1, f"model.gpu_memory_utilization={m.gpu_memory_utilization}: use a fraction in (0, 1), e.g. 0.6")
    check(lora.r > 0 and lora.alpha > 0, f"lora.r={lora.r}, lora.alpha={lora.alpha}: both must be positive (e.g. 32)")
    check(bool(lora.target_modules), "lora.target_modules is empty: list the projections to adapt, e.g. [q_proj, v_proj]")
    check(lora.gradient_checkpointing in (True, False, "unsloth"), f"lora.gradient_checkpointing={lora.gradient_checkpointing!r}: use unsloth, true or false")
    check(d.max_prompt_length > 0, f"data.max_prompt_length={d.max_prompt_length}: must be positive")
    check(d.limit is None or d.limit > 0, f"data.limit={d.limit}: use a positive number of questions, or null for all")
    budget = d.max_prompt_length + t.max_completion_length
    check(budget <= m.max_seq_length, f"data.max_prompt_length + training.max_completion_length = {budget} exceeds model.max_seq_length={m.max_seq_length}: raise model.max_seq_length to at least {budget} or shorten one of them")
    check(bool(cfg.rewards), f"rewards is empty: list at least one of {', '.join(rewards.REWARDS)} with a weight")
    for name, weight in cfg.rewards.items():
        check(name in rewards.REWARDS, f"unknown reward '{name}' in rewards: {_closest(name, rewards.REWARDS, 'rewards.')}")
        check(math.isfinite(weight), f"rewards.{name}={weight}: the weight must be a finite number")
    check(t.num_generations >= 2, f"training.num_generations={t.num_generations}: GRPO compares completions of one prompt, so use at least 2")
    check(t.prompts_per_step >= 1, f"training.prompts_per_step={t.prompts_per_step}: must be at least 1")
    check(t.steps_per_generation >= 1, f"training.steps_per_generation={t.steps_per_generation}: must be at least 1")
    check(t.max_completion_length > 0, f"training.max_completion_length={t.max_completion_length}: must be positive")
    check(t.max_steps == -1 or t.max_steps > 0, f"training.max_steps={t.max_steps}: use a positive number, or -1 to train for training.num_train_epochs")
    check(t.max_steps > 0 or t.num_train_epochs > 0, f"training.num_train_epochs={t.num_train_epochs}: must be positive when training.max_steps is -1")
    check(t.temperature > 0, f"training.temperature={t.temperature}: must be positive (1.0 samples the model as is)")
    check(t.learning_rate > 0, f"training.learning_rate={t.learning_rate}: must be positive")
    check(t.beta >= 0, f"training.beta={t.beta}: the KL coefficient cannot be negative")
    check(0 <= t.warmup_ratio < 1, f"training.warmup_ratio={t.warmup_ratio}: use a fraction in [0, 1)")
    for key in ("logging_steps", "save_steps", "save_total_limit", "sample_every"):
        check(getattr(o, key) > 0, f"output.{key}={getattr(o, key)}: must be positive")
    check(o.resume in ("never", "auto") or Path(o.resume).is_dir(), f"output.resume={o.resume!r}: use never, auto, or the path of an existing checkpoint folder")


def resolve_backend(cfg: Config) -> str:
    """Pick the backend and reject GPU-only settings on a machine without CUDA."""
    import torch

    cuda = torch.cuda.is_available()
    backend = cfg.model.backend if cfg.model.backend != "auto" else ("unsloth" if cuda else "trl")
    if not cuda:
        no_gpu = [
            (backend == "unsloth", "model.backend=unsloth needs a CUDA GPU: use model.backend=trl (or auto) on this machine"),
            (cfg.model.fast_inference, "model.fast_inference=true needs vLLM on a CUDA GPU: set model.fast_inference=false on this machine"),
            (cfg.model.load_in_4bit, "model.load_in_4bit=true needs bitsandbytes on a CUDA GPU: set model.load_in_4bit=false on this machine"),
            ("8bit" in cfg.training.optim, f"training.optim={cfg.training.optim} needs bitsandbytes on a CUDA GPU: use adamw_torch on this machine"),
        ]
        for failed, message in no_gpu:
            if failed:
                raise RecipeError(message)
    return backend


def resolve_resume(cfg: Config) -> str | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run that has checkpoints."""
    out = Path(cfg.output.dir)
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    if cfg.output.resume == "never":
        if checkpoints:
            raise RecipeError(f"{out} already holds {checkpoints[-1].name}: pass --resume to continue that run, or set output.dir to a new folder")
        return None
    chosen = (str(checkpoints[-1]) if checkpoints else None) if cfg.output.resume == "auto" else cfg.output.resume
    if chosen is not None and not (Path(chosen) / "trainer_state.json").is_file():
        raise RecipeError(f"{chosen} has no trainer_state.json (an unfinished save?): delete it to resume from the one before, or set output.resume to another checkpoint")
    return chosen


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def load_rows(cfg: DataConfig):
    """The raw question/answer rows: a hub id, a local data file or a local dataset folder."""
    import datasets

    path = Path(cfg.dataset).expanduser()
    try:
        if path.is_file():
            kind = LOCAL_DATA_SUFFIXES.get(path.suffix)
            if kind is None:
                raise RecipeError(f"data.dataset={cfg.dataset}: unsupported file type; use one of {', '.join(LOCAL_DATA_SUFFIXES)}")
            return datasets.load_dataset(kind, data_files=str(path), split="train")
        if path.is_dir():
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                saved = datasets.load_from_disk(str(path))
                return saved[cfg.split] if isinstance(saved, datasets.DatasetDict) else saved
            return datasets.load_dataset(str(path), cfg.subset, split=cfg.split)
        if cfg.dataset.startswith((".", "/", "~")) or path.suffix in LOCAL_DATA_SUFFIXES:
            raise RecipeError(f"data.dataset={cfg.dataset}: no such file or folder")
        return datasets.load_dataset(cfg.dataset, cfg.subset, split=cfg.split)
    except RecipeError:
        raise
    except Exception as error:  # datasets raises many types for unreachable hubs and bad files
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RecipeError(
            f"could not load data.dataset={cfg.dataset} ({type(error).__name__}: {first_line[:200]}); "
            "if the Hugging Face Hub is unreachable, download the dataset elsewhere and set data.dataset "
            "to a local .jsonl/.parquet file or dataset folder"
        ) from None


def chat_prompt(question: str) -> list[dict[str, str]]:
    """The conversation the model sees: the format's system prompt, then the question."""
    return [{"role": "system", "content": rewards.SYSTEM_PROMPT}, {"role": "user", "content": question}]


def prompt_tokens(tokenizer, prompt: list[dict[str, str]]) -> int:
    """Tokens of a chat prompt as the model sees it, generation header included."""
    return len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))


def build_prompts(rows, tokenizer, cfg: DataConfig) -> tuple[Any, dict[str, int]]:
    """Chat prompts with a parsed gold answer; drops rows without a gold number or over the prompt budget."""
    for column in (cfg.question_field, cfg.answer_field):
        if column not in rows.column_names:
            raise RecipeError(f"data.dataset={cfg.dataset} has no column '{column}' (columns: {', '.join(rows.column_names)}): set data.question_field / data.answer_field")
    if cfg.limit is not None:
        rows = rows.select(range(min(cfg.limit, len(rows))))
    stats = {"rows": len(rows)}

    def to_prompt(row: dict) -> dict:
        gold = rewards.parse_gold(row[cfg.answer_field])
        prompt = chat_prompt(str(row[cfg.question_field]))
        return {"prompt": prompt, "question": str(row[cfg.question_field]), "answer": None if gold is None else f"{gold:f}",
                "prompt_tokens": prompt_tokens(tokenizer, prompt)}

    prompts = rows.map(to_prompt, remove_columns=rows.column_names)
    with_gold = prompts.filter(lambda row: row["answer"] is not None)
    stats["dropped_no_gold"] = len(prompts) - len(with_gold)
    kept = with_gold.filter(lambda row: row["prompt_tokens"] <= cfg.max_prompt_length)
    stats["dropped_too_long"] = len(with_gold) - len(kept)
    stats["kept"] = len(kept)
    stats["longest_prompt_tokens"] = max(kept["prompt_tokens"], default=0)
    if len(kept) == 0:
        raise RecipeError(f"no usable questions in data.dataset={cfg.dataset} ({stats}): check the answer column holds GSM8K answers ('... #### 42') and data.max_prompt_length")
    return kept.remove_columns("prompt_tokens"), stats


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as error:  # transformers raises OSError, ValueError or hub errors for a bad name
        raise RecipeError(
            f"could not load the tokenizer of model.name={name} ({type(error).__name__}); set model.name to a "
            "local model folder if the Hugging Face Hub is unreachable"
        ) from None
    if tokenizer.chat_template is None:
        raise RecipeError(f"the tokenizer of model.name={name} has no chat template: GRPO prompts here are chat messages, so use a model whose tokenizer ships one")
    return tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the chat template's end-of-turn token: base models often end a turn without EOS."""
    ids = [tokenizer.eos_token_id]
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None and end_of_turn not in ids:
        ids.append(end_of_turn)
    return ids


def import_unsloth(model: ModelConfig) -> None:
    """Import Unsloth, which must come before transformers and trl to patch them."""
    # Its usage statistics download stalls for minutes where the hub is unreachable.
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    if not model.compile:
        # torch.compile unrolls Unsloth's chunked log-prob function over batch rows x 4 chunks: the
        # seed's first step spent 3 to 4 minutes compiling it, and 32 rows crashed the compiler.
        os.environ["UNSLOTH_COMPILE_DISABLE"] = "1"
    import unsloth  # noqa: F401


def load_model_unsloth(cfg: Config):
    from unsloth import FastLanguageModel  # patches transformers/trl/peft, so it is imported first

    local = Path(cfg.model.name).expanduser()
    model, tokenizer = FastLanguageModel.from_pretrained(
        # An absolute path keeps Unsloth from looking a relative "a/b" folder up as a hub name.
        model_name=str(local.resolve()) if local.is_dir() else cfg.model.name,
        local_files_only=local.is_dir(),
        max_seq_length=cfg.model.max_seq_length,
        load_in_4bit=cfg.model.load_in_4bit,
        fast_inference=cfg.model.fast_inference,
        max_lora_rank=cfg.lora.r,
        gpu_memory_utilization=cfg.model.gpu_memory_utilization,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        target_modules=cfg.lora.target_modules,
        use_gradient_checkpointing=cfg.lora.gradient_checkpointing,
        random_state=cfg.training.seed,
    )
    return model, tokenizer


def load_model_trl(cfg: Config, tokenizer):
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model.name, dtype=dtype)
    peft_config = PeftLoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, target_modules=cfg.lora.target_modules, lora_dropout=0.0, task_type="CAUSAL_LM")
    return get_peft_model(model, peft_config), tokenizer


def load_model(cfg: Config, backend: str, tokenizer):
    """The LoRA model and the tokenizer to train with: Unsloth returns its own patched tokenizer."""
    model, tokenizer = load_model_unsloth(cfg) if backend == "unsloth" else load_model_trl(cfg, tokenizer)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    return model, tokenizer


def grpo_args(cfg: Config, backend: str, stop_ids: list[int]):
    """TRL's GRPOConfig from ours; GRPOConfig checks its own invariants when built."""
    import torch
    from trl import GRPOConfig

    t, o = cfg.training, cfg.output
    cuda = torch.cuda.is_available()
    return GRPOConfig(
        output_dir=o.dir,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        per_device_train_batch_size=t.prompts_per_step * t.num_generations,
        gradient_accumulation_steps=1,
        steps_per_generation=t.steps_per_generation,
        num_generations=t.num_generations,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        beta=t.beta,
        loss_type=t.loss_type,
        learning_rate=t.learning_rate,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler_type,
        optim=t.optim,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        reward_weights=list(cfg.rewards.values()),
        use_vllm=cfg.model.fast_inference,
        # vLLM stops only at EOS by default; a base model ends its chat turn with <|im_end|> instead.
        generation_kwargs={"stop_token_ids": stop_ids} if cfg.model.fast_inference else None,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=cfg.model.gpu_memory_utilization,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        # Unsloth applies its own checkpointing through get_peft_model.
        gradient_checkpointing=backend == "trl" and cfg.lora.gradient_checkpointing is not False,
        logging_steps=o.logging_steps,
        save_steps=o.save_steps,
        save_total_limit=o.save_total_limit,
        report_to="none",
        log_completions=False,
    )


def trainable_parameters(model) -> int:
    # Only the trainable count: a 4-bit model packs two weights per stored element, so totals mislead.
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def memory_plan(cfg: Config) -> str:
    import torch

    if not torch.cuda.is_available():
        return "CPU only (no GPU memory plan)"
    free, total = (b / 2**30 for b in torch.cuda.mem_get_info())
    plan = f"{torch.cuda.get_device_name(0)} {total:.0f} GiB, {free:.1f} free; "
    if cfg.model.fast_inference:
        # Unsloth takes model.gpu_memory_utilization of the memory free at load time, not of the card.
        vllm = cfg.model.gpu_memory_utilization * free
        plan += f"vLLM takes {cfg.model.gpu_memory_utilization:.2f} x {free:.1f} = {vllm:.1f} GiB (weights + KV cache), training the rest; "
    plan += "lower model.gpu_memory_utilization or training.num_generations if it runs out of memory"
    return plan


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def trim_jsonl(path: Path, last_step: int) -> None:
    """Drop records logged after ``last_step``: a resumed run logs those steps again."""
    if path.exists():
        kept = [row for row in read_jsonl(path) if row.get("step", 0) <= last_step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))


HEALTH_WINDOW = 10


def health_warnings(recent: list[dict]) -> list[str]:
    """Hints when the last HEALTH_WINDOW logged steps show GRPO has nothing to learn from."""
    if len(recent) < HEALTH_WINDOW:
        return []
    found = []
    if all(row.get("completions/clipped_ratio", 0.0) >= 0.9 for row in recent):
        found.append("almost every completion stops at training.max_completion_length, so no answer can follow: raise it (and model.max_seq_length)")
    if all(row.get("frac_reward_zero_std", 0.0) >= 0.99 for row in recent):
        found.append("every completion of a prompt gets the same reward, so GRPO has no advantage to follow: look at samples.jsonl (is the format ever written?)")
    return found


def make_callbacks(cfg: Config, sample_log: "SampleLog"):
    """Training callbacks: metrics JSONL, a compact progress bar and the samples log."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    out = Path(cfg.output.dir)

    class MetricsLog(TrainerCallback):
        """Every logged step as one JSON line: rewards, lengths, KL, step time; warns once when learning is stuck."""

        def __init__(self):
            self.recent: list[dict] = []
            self.warned: set[str] = set()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps({"step": state.global_step, "time": round(time.time(), 1), **logs}) + "\n")
                if "reward" in logs:
                    self.recent = [*self.recent, logs][-HEALTH_WINDOW:]
                    for warning in set(health_warnings(self.recent)) - self.warned:
                        self.warned.add(warning)
                        print(f"\nwarning at step {state.global_step}: {warning}", flush=True)

    class ProgressBar(TrainerCallback):
        """One bar with ETA and the numbers that say whether it learns, instead of a dict per step."""

        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="GRPO", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs:
                shown = {"reward": logs.get("reward"), "correct": logs.get("rewards/correctness/mean"), "len": logs.get("completions/mean_length"), "s/step": logs.get("step_time")}
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items() if v is not None}, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return [MetricsLog(), ProgressBar(), sample_log.callback()]


class SampleLog:
    """Keeps the last batch the rewards scored and writes it out every ``every`` steps.

    The seed printed this from inside a reward; here rewards stay pure and this wrapper watches them.
    """

    def __init__(self, path: Path, every: int, reward_names: list[str]):
        self.path, self.every, self.reward_names = path, every, reward_names
        self.batch: dict | None = None

    def watch(self, fn):
        @functools.wraps(fn)
        def watched(prompts, completions, **kwargs):
            self.batch = {"completions": completions, "answer": kwargs.get("answer"), "question": kwargs.get("question")}
            return fn(prompts, completions, **kwargs)

        return watched

    def rows(self, step: int) -> list[dict]:
        batch = self.batch or {}
        texts = [rewards.completion_text(c) for c in batch.get("completions") or []]
        answers = batch.get("answer") or [None] * len(texts)
        questions = batch.get("question") or [None] * len(texts)
        scores = {name: rewards.REWARDS[name]([None] * len(texts), texts, answer=answers) for name in self.reward_names}
        return [
            {"step": step, "question": q, "gold": a, "response": text, "extracted": rewards.extract_answer(text), **{name: scores[name][i] for name in self.reward_names}}
            for i, (q, a, text) in enumerate(zip(questions, answers, texts))
        ]

    def callback(self):
        from transformers import TrainerCallback

        log = self

        class SampleCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if not state.is_world_process_zero or log.batch is None or state.global_step % log.every:
                    return
                rows = log.rows(state.global_step)
                with open(log.path, "a") as f:
                    f.writelines(json.dumps(row) + "\n" for row in rows)
                first = rows[0]
                print(f"\n[step {first['step']}] gold={first['gold']} extracted={first['extracted']!r} correctness={first.get('correctness')}\n{first['response'][:600]}\n", flush=True)

        return SampleCallback()


def build_trainer(cfg: Config, model, tokenizer, dataset, args):
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOTrainer

    out = Path(cfg.output.dir)
    sample_log = SampleLog(out / "samples.jsonl", cfg.output.sample_every, list(cfg.rewards))
    reward_funcs = [rewards.REWARDS[name] for name in cfg.rewards]
    reward_funcs[0] = sample_log.watch(reward_funcs[0])
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=args, train_dataset=dataset)
    trainer.remove_callback(ProgressCallback)
    for callback in make_callbacks(cfg, sample_log):
        trainer.add_callback(callback)
    return trainer


def planned_steps(cfg: Config, n_prompts: int) -> tuple[int, float]:
    per_epoch = math.ceil(n_prompts / cfg.training.prompts_per_step)
    if cfg.training.max_steps > 0:
        return cfg.training.max_steps, cfg.training.max_steps / per_epoch
    return math.ceil(per_epoch * cfg.training.num_train_epochs), cfg.training.num_train_epochs


def save_adapter(trainer, tokenizer, out: Path) -> Path:
    adapter = out / "adapter"
    trainer.save_model(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    return adapter


def plot_curves(out: Path) -> list[Path]:
    """PNGs of metrics.jsonl; a plotting problem must not fail a finished run."""
    import plots  # here, not at the top: plots imports RecipeError from this module

    try:
        return plots.plot_metrics(out / "metrics.jsonl", out / "plots")
    except RecipeError as error:
        print(f"warning: no plots: {error}", file=sys.stderr)
        return []


def parse_args(argv: typing.Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (defaults: the dataclasses in this file)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. training.max_steps=500 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir (same as output.resume=auto)")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, build the dataset and print the plan without loading the model")
    return parser.parse_args(argv)


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, [*args.overrides, *(["output.resume=auto"] if args.resume else [])])
        backend = resolve_backend(cfg)
        resume_from = resolve_resume(cfg)
        if backend == "unsloth":
            import_unsloth(cfg.model)
        tokenizer = load_tokenizer(cfg.model.name)
        dataset, stats = build_prompts(load_rows(cfg.data), tokenizer, cfg.data)
        grpo_config = grpo_args(cfg, backend, stop_token_ids(tokenizer))
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    out = Path(cfg.output.dir)
    steps, epochs = planned_steps(cfg, stats["kept"])
    print(f"config (saved to {out / 'config.yaml'}):\n{config_to_yaml(cfg)}")
    print(f"model {cfg.model.name} | backend {backend} | {'4-bit' if cfg.model.load_in_4bit else '16-bit'} LoRA r={cfg.lora.r} | vLLM {'on' if cfg.model.fast_inference else 'off'}")
    print(f"data {cfg.data.dataset}: {stats['kept']} prompts kept of {stats['rows']} ({stats['dropped_no_gold']} without a gold answer, {stats['dropped_too_long']} over {cfg.data.max_prompt_length} tokens; longest {stats['longest_prompt_tokens']})")
    print(f"plan {steps} steps x {cfg.training.prompts_per_step} prompt(s) x {cfg.training.num_generations} completions = {epochs:.2f} epochs; rewards {', '.join(f'{k}x{v:g}' for k, v in cfg.rewards.items())}")
    print(f"memory {memory_plan(cfg)}")
    if args.dry_run:
        return 0

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(config_to_yaml(cfg))
    if resume_from is not None:
        resumed_step = int(json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"])
        for name in ("metrics.jsonl", "samples.jsonl"):
            trim_jsonl(out / name, resumed_step)
        print(f"resuming from {resume_from} (step {resumed_step})")

    started = time.time()
    model, tokenizer = load_model(cfg, backend, tokenizer)
    print(f"loaded in {time.time() - started:.0f}s: {trainable_parameters(model):,} trainable parameters")
    print("note: GRPO's loss starts near 0 and stays small; watch the reward and correctness instead")
    trainer = build_trainer(cfg, model, tokenizer, dataset, grpo_config)
    trainer.train(resume_from_checkpoint=resume_from)
    adapter = save_adapter(trainer, tokenizer, out)
    plot_curves(out)
    print(f"done in {(time.time() - started) / 60:.1f} min: adapter in {adapter}, metrics in {out / 'metrics.jsonl'}, samples in {out / 'samples.jsonl'}, plots in {out / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
