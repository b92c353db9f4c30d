"""The recipe's config: typed dataclasses with every default, loaded from YAML and ``--set`` overrides.

Unknown keys fail with the closest valid name, a key written twice fails with its lines, wrong types
name the key; ``validate`` rejects impossible settings. ``~`` and environment variables expand in
path keys. All of it runs before any model, tokenizer or dataset is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import rewards
from recipe import tracking
from recipe.errors import RecipeError, closest, first_line

LORA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Keys that name a file or folder: ~ and $VARIABLES expand in them, and none may be empty.
PATH_KEYS = (("model", "name"), ("data", "dataset"), ("output", "dir"), ("output", "resume"))


@dataclass
class ModelConfig:
    name: str = "Qwen/Qwen2.5-3B"
    backend: str = "auto"
    max_seq_length: int = 512
    load_in_4bit: bool = False
    fast_inference: bool = True
    gpu_memory_utilization: float = 0.35
    compile: bool = False
    vllm_compile: bool = False


@dataclass
class VllmConfig:
    """How TRL runs vLLM when model.fast_inference is true; the keys TRL's GRPOConfig calls vllm_*."""

    mode: str = "colocate"
    tensor_parallel_size: int = 1
    server_host: str = "0.0.0.0"
    server_port: int = 8000


@dataclass
class LoraConfig:
    r: int = 32
    alpha: int = 32
    target_modules: list[str] = field(default_factory=lambda: list(LORA_PROJECTIONS))
    gradient_checkpointing: bool | str = False


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
    optim: str = "adamw_torch_fused"
    max_grad_norm: float = 0.1
    seed: int = 3407
    cuda_graphs: bool = True
    # Any other GRPOConfig field, passed through as is; recipe.grpo_config.grpo_args checks each against TRL.
    trl: dict[str, Any] = field(default_factory=dict)


@dataclass
class OutputConfig:
    dir: str = "outputs/qwen2.5-3b-grpo"
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int = 3
    sample_every: int = 10
    resume: str = "never"
    report_to: str | list[str] = "none"


def default_rewards() -> dict[str, float]:
    return {name: 1.0 for name in rewards.REWARDS}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rewards: dict[str, float] = field(default_factory=default_rewards)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def coerce(value: Any, kind: Any, key: str) -> Any:
    """``value`` checked against the annotation ``kind``; ints are accepted where floats are expected."""
    if kind is Any:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return coerce(value, option, key)
            except RecipeError:
                continue
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise RecipeError(f"{key}: expected {names}, got {value!r}")
    if kind is type(None):
        if value is None:
            return None
    elif origin is typing.Literal:  # transformers' fields use these beside str and None, e.g. Literal[False]
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif kind in (dict, list):
        if isinstance(value, kind):
            return value
    elif origin is list:
        if isinstance(value, list):
            return [coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            return {coerce(k, args[0], key): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 5e-6 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif kind in (bool, int, str) and type(value) is kind:
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
            raise RecipeError(f"unknown config key '{path}': {closest(str(key), names, prefix)}")
        kind = hints[key]
        if value is None and (dataclasses.is_dataclass(kind) or typing.get_origin(kind) is dict):
            value = {}  # keys all commented out: a section's defaults, no rewards (refused, naming them)
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{path}.")
        else:
            kwargs[key] = coerce(value, kind, path)
    return cls(**kwargs)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, again: int):
        super().__init__(f"key '{key}' on lines {first} and {again}")
        self.key, self.first, self.again = key, first, again


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (safe_load keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *defaults" may repeat what it overrides
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise DuplicateKey(key, seen[key], line)
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    # A SafeLoader: like yaml.safe_load, no tag constructs a Python object.
    return yaml.load(text, Loader=UniqueKeyLoader)


def field_type(cls: Any, key: Any) -> Any:
    """The annotation of ``key`` in the dataclass ``cls``, or None (not a dataclass, or no such field)."""
    if not dataclasses.is_dataclass(cls) or key not in {f.name for f in dataclasses.fields(cls)}:
        return None
    return typing.get_type_hints(cls)[key]


def merge(into: dict, value: dict, cls: Any) -> None:
    """``value``'s keys set one by one into ``into``, a section of the dataclass ``cls``: a mapping for a
    section (a dataclass) changes only the keys it names; anything else, a free mapping included, is replaced."""
    for key, item in value.items():
        kind = field_type(cls, key)
        if dataclasses.is_dataclass(kind) and isinstance(item, dict) and isinstance(into.get(key), dict):
            merge(into[key], item, kind)
        else:
            into[key] = item


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to the raw config mapping.

    A mapping merges into a section (``--set training={beta: 0}`` is ``--set training.beta=0``), so it
    never resets the keys it does not name. A mapping of free keys (rewards, training.trl) is replaced,
    as the same YAML in a config file replaces it: ``--set rewards={correctness: 1}`` trains on that
    reward alone, ``--set rewards.correctness=2`` changes one weight.
    """
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected section.key=value, e.g. training.max_steps=500")
    dotted, text = assignment.split("=", 1)
    *parents, leaf = dotted.strip().split(".")
    node, cls = raw, Config
    for part in parents:
        if node.get(part) is None:  # absent, or written with its keys all commented out
            node[part] = {}
        node, cls = node[part], field_type(cls, part)
        if not isinstance(node, dict):
            raise RecipeError(f"--set {assignment!r}: '{part}' is not a section")
    try:
        value = parse_yaml(text)
    except DuplicateKey as error:
        raise RecipeError(f"--set {assignment!r}: key '{error.key}' is given twice; keep one") from None
    except yaml.YAMLError as error:
        raise RecipeError(
            f"--set {assignment!r}: the value is not valid YAML ({first_line(error)}); quote it or fix it"
        ) from None
    merge(node, {leaf: value}, cls)


def add_override_argument(parser, example: str) -> None:
    """``--set section.key=value`` (repeatable) on an entry point's parser, read by load_config."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example} (repeatable)",
    )


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's error as one line: where it found the problem, what it is, and what it was reading then."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return f"({first_line(error)})"
    text = f"at line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    if error.context:
        since = error.context_mark
        start = f" from line {since.line + 1}, column {since.column + 1}" if since is not None else ""
        text += f" ({error.context}{start})"
    return text


def read_config_file(path: str) -> dict:
    """The YAML mapping of a config file; anything else (a list, a number, a key written twice) is one line."""
    config_path = Path(path)
    if config_path.is_dir():
        raise RecipeError(f"config file '{path}' is a directory: pass --config with the path of a YAML file in it")
    if not config_path.is_file():
        raise RecipeError(f"config file '{path}' not found: pass --config with the path of a YAML file")
    try:
        raw = parse_yaml(config_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise RecipeError(f"config file '{path}' is not UTF-8 text (byte {error.start}): save it as UTF-8") from None
    except OSError as error:
        raise RecipeError(
            f"config file '{path}' cannot be read ({error.strerror or error}): make it readable, or pass another file"
        ) from None
    except DuplicateKey as error:
        raise RecipeError(
            f"config file '{path}' sets '{error.key}' twice (lines {error.first} and {error.again}): "
            "keep one, since YAML would silently drop the first"
        ) from None
    except yaml.YAMLError as error:
        fix = "indent with spaces, not tabs" if "'\\t'" in str(error) else "fix it there"
        raise RecipeError(f"config file '{path}' is not valid YAML {yaml_problem(error)}: {fix}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(
            f"config: expected a mapping of sections (model:, data:, training:, ...) at the top of '{path}', "
            f"got a YAML {'list' if isinstance(raw, list) else type(raw).__name__}: write key: value lines"
        )
    return raw


def expand_path(key: str, value: str) -> str:
    """``~`` and ``$VARIABLE``/``${VARIABLE}`` expanded; a variable that is not set is an error, not a folder named after it."""
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = re.search(r"\$\{?(\w+)", expanded)
    if unset:
        raise RecipeError(
            f"{key}={value}: environment variable {unset.group(1)} is not set; set it or write the path out"
        )
    return expanded


def expand_paths(cfg: Config) -> None:
    for section, name in PATH_KEYS:
        part = getattr(cfg, section)
        setattr(part, name, expand_path(f"{section}.{name}", getattr(part, name)))


def load_config(path: str | None, overrides: typing.Sequence[str] = ()) -> Config:
    raw = {} if path is None else read_config_file(path)
    if "rewards" not in raw and any(a.strip().startswith("rewards.") for a in overrides):
        # A --set of one weight adjusts the defaults; without this it would replace them and drop the other rewards.
        raw["rewards"] = default_rewards()
    for assignment in overrides:
        apply_override(raw, assignment)
    for section, name in PATH_KEYS:  # YAML reads an empty value as null, yes as true: say so, not "expected str"
        if isinstance(raw.get(section), dict) and name in raw[section]:
            value = raw[section][name]
            if value is None:
                raise RecipeError(empty_path(section, name))
            if not isinstance(value, str):
                booleans = (
                    "YAML reads yes, no, true, false, on and off as booleans: " if isinstance(value, bool) else ""
                )
                raise RecipeError(f"{section}.{name}={value}: {booleans}{EMPTY_PATH_FIX[section, name]}")
    config = _build(Config, raw, "")
    expand_paths(config)
    validate(config)
    return config


EMPTY_PATH_FIX = {
    ("model", "name"): "set it to a hub id (Qwen/Qwen2.5-3B) or a model folder",
    ("data", "dataset"): "set it to a hub id (openai/gsm8k), a .jsonl/.parquet file or a dataset folder",
    ("output", "dir"): "set it to the folder for this run's outputs, e.g. outputs/my-run",
    ("output", "resume"): "use never, auto, or the path of a checkpoint folder",
}


def empty_path(section: str, name: str) -> str:
    return f"{section}.{name} is empty: {EMPTY_PATH_FIX[section, name]}"


def validate(cfg: Config) -> None:
    """Reject impossible settings before any model, tokenizer or dataset is loaded."""
    m, lora, d, t, o = cfg.model, cfg.lora, cfg.data, cfg.training, cfg.output

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise RecipeError(message)

    # Before any sign or range check: nan fails those too, and they would name the wrong reason.
    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        for key in dataclasses.fields(part) if dataclasses.is_dataclass(part) else ():
            value = getattr(part, key.name)
            check(
                not isinstance(value, float) or math.isfinite(value),
                f"{section.name}.{key.name}={value}: use a finite number, e.g. the default {key.default}",
            )
    for section, name in PATH_KEYS:
        check(bool(getattr(getattr(cfg, section), name).strip()), empty_path(section, name))
    check(m.backend in ("auto", "unsloth", "trl"), f"model.backend={m.backend!r}: use auto, unsloth or trl")
    check(
        0 < m.gpu_memory_utilization < 1,
        f"model.gpu_memory_utilization={m.gpu_memory_utilization}: use a fraction in (0, 1), e.g. 0.6",
    )
    check(lora.r > 0 and lora.alpha > 0, f"lora.r={lora.r}, lora.alpha={lora.alpha}: both must be positive (e.g. 32)")
    check(
        bool(lora.target_modules), "lora.target_modules is empty: list the projections to adapt, e.g. [q_proj, v_proj]"
    )
    check(
        lora.gradient_checkpointing in (True, False, "unsloth"),
        f"lora.gradient_checkpointing={lora.gradient_checkpointing!r}: use unsloth, true or false",
    )
    check(d.max_prompt_length > 0, f"data.max_prompt_length={d.max_prompt_length}: must be positive")
    check(d.limit is None or d.limit > 0, f"data.limit={d.limit}: use a positive number of questions, or null for all")
    budget = d.max_prompt_length + t.max_completion_length
    check(
        budget <= m.max_seq_length,
        f"data.max_prompt_length + training.max_completion_length = {budget} exceeds model.max_seq_length={m.max_seq_length}: raise model.max_seq_length to at least {budget} or shorten one of them",
    )
    check(bool(cfg.rewards), f"rewards is empty: list at least one of {', '.join(rewards.REWARDS)} with a weight")
    for name, weight in cfg.rewards.items():
        check(
            name in rewards.REWARDS,
            f"unknown reward '{name}' in rewards: {closest(name, rewards.REWARDS, 'rewards.')}",
        )
        check(math.isfinite(weight), f"rewards.{name}={weight}: the weight must be a finite number")
    check(
        any(weight != 0 for weight in cfg.rewards.values()),
        "rewards: every weight is 0, so nothing would be learned: give at least one reward a weight, e.g. rewards.correctness=1",
    )
    check(
        t.num_generations >= 2,
        f"training.num_generations={t.num_generations}: GRPO compares completions of one prompt, so use at least 2",
    )
    check(t.prompts_per_step >= 1, f"training.prompts_per_step={t.prompts_per_step}: must be at least 1")
    check(t.steps_per_generation >= 1, f"training.steps_per_generation={t.steps_per_generation}: must be at least 1")
    check(t.max_completion_length > 0, f"training.max_completion_length={t.max_completion_length}: must be positive")
    check(
        t.max_steps == -1 or t.max_steps > 0,
        f"training.max_steps={t.max_steps}: use a positive number, or -1 to train for training.num_train_epochs",
    )
    check(
        t.max_steps > 0 or t.num_train_epochs > 0,
        f"training.num_train_epochs={t.num_train_epochs}: must be positive when training.max_steps is -1",
    )
    # Its default stands beside a step count: only a value someone chose would be silently ignored by TRL.
    check(
        t.max_steps == -1 or t.num_train_epochs == TrainingConfig.num_train_epochs,
        f"training.num_train_epochs={t.num_train_epochs} is ignored while training.max_steps={t.max_steps} sets the length of the run: set training.max_steps=-1 to train by epochs, or leave num_train_epochs at 1",
    )
    check(t.temperature > 0, f"training.temperature={t.temperature}: must be positive (1.0 samples the model as is)")
    check(t.learning_rate > 0, f"training.learning_rate={t.learning_rate}: must be positive")
    check(t.beta >= 0, f"training.beta={t.beta}: the KL coefficient cannot be negative")
    check(0 <= t.warmup_ratio < 1, f"training.warmup_ratio={t.warmup_ratio}: use a fraction in [0, 1)")
    for key in ("logging_steps", "save_steps", "save_total_limit", "sample_every"):
        check(getattr(o, key) > 0, f"output.{key}={getattr(o, key)}: must be positive")
    tracking.check_names(o.report_to)
    check(
        o.resume in ("never", "auto") or Path(o.resume).is_dir(),
        f"output.resume={o.resume!r}: use never, auto, or the path of an existing checkpoint folder",
    )
    validate_training_values(t)
    validate_vllm(cfg)


LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo")  # TRL 1.14's GRPOTrainer


def validate_training_values(t: TrainingConfig) -> None:
    """Values TRL or torch would take unchecked and fail on (or train nonsense with) only after the model loads."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise RecipeError(message)

    check(
        t.max_grad_norm >= 0,
        f"training.max_grad_norm={t.max_grad_norm}: use a positive clipping norm (0 turns clipping off)",
    )
    check(t.weight_decay >= 0, f"training.weight_decay={t.weight_decay}: cannot be negative")
    for key in ("adam_beta1", "adam_beta2"):
        check(0 <= getattr(t, key) < 1, f"training.{key}={getattr(t, key)}: use a value in [0, 1), e.g. 0.9 or 0.99")
    check(0 <= t.seed < 2**32, f"training.seed={t.seed}: use a whole number in [0, 2**32)")
    check(t.loss_type in LOSS_TYPES, f"training.loss_type={t.loss_type!r}: use one of {', '.join(LOSS_TYPES)}")


def check_trainer_names(t: TrainingConfig) -> None:
    """training.lr_scheduler_type (with its settings) and training.optim against the installed transformers' names.

    Not part of load_config: it imports transformers (and with it peft), which Unsloth must follow to patch
    them, so a training entry point calls this after Unsloth's import, still before any model loads.
    """
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    schedulers = [s.value for s in SchedulerType]
    if t.lr_scheduler_type not in schedulers:
        hint = closest(t.lr_scheduler_type, schedulers, otherwise=f"use one of {', '.join(schedulers)}")
        raise RecipeError(f"training.lr_scheduler_type={t.lr_scheduler_type!r}: {hint}")
    optimizers = [o.value for o in OptimizerNames]
    if t.optim not in optimizers:
        # The usual ones first: among all of transformers' ~50 names, 'adamw' is closest to grokadamw.
        hint = closest(
            t.optim,
            USUAL_OPTIMIZERS,
            otherwise=closest(t.optim, optimizers, otherwise="not one of transformers' optimizers."),
        )
        raise RecipeError(f"training.optim={t.optim!r}: {hint} The usual ones: {', '.join(USUAL_OPTIMIZERS)}")
    check_scheduler(t)


USUAL_OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "paged_adamw_8bit")


# Schedulers that transformers builds only with settings from lr_scheduler_kwargs, and an example of them.
SCHEDULER_SETTINGS = {
    "cosine_with_min_lr": "{min_lr_rate: 0.1}",
    "cosine_warmup_with_min_lr": "{min_lr_rate: 0.1}",
    "warmup_stable_decay": "{num_decay_steps: 100}",
}
# Schedulers that step on an evaluation loss; GRPOTrainer here gets no evaluation set.
EVAL_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")


def check_scheduler(t: TrainingConfig) -> None:
    """training.lr_scheduler_type with training.trl.lr_scheduler_kwargs built by transformers against a throwaway
    optimizer: the Trainer builds the real one only after the model loads."""
    import json

    import torch
    from transformers.optimization import get_scheduler

    name = t.lr_scheduler_type
    if name in EVAL_SCHEDULERS:
        raise RecipeError(
            f"training.lr_scheduler_type={name} steps on an evaluation loss, and this recipe trains without an "
            "evaluation set: use cosine, linear or constant_with_warmup"
        )
    settings = t.trl.get("lr_scheduler_kwargs") or {}
    if isinstance(settings, str):  # transformers also takes the settings as JSON text
        try:
            settings = json.loads(settings)
        except ValueError:
            return  # GRPOConfig names the key
    if not isinstance(settings, dict):
        return
    steps = t.max_steps if t.max_steps > 0 else 1000  # a length of run for the check; settings do not depend on it
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=t.learning_rate)
    try:
        get_scheduler(
            name,
            optimizer,
            num_warmup_steps=math.ceil(t.warmup_ratio * steps),
            num_training_steps=steps,
            scheduler_specific_kwargs=settings,
        )
    except (TypeError, ValueError) as error:
        given = f" with training.trl.lr_scheduler_kwargs={settings}" if settings else ""
        if settings:
            fix = "fix training.trl.lr_scheduler_kwargs"
        elif name in SCHEDULER_SETTINGS:
            fix = f"set training.trl.lr_scheduler_kwargs, e.g. {SCHEDULER_SETTINGS[name]}"
        else:
            fix = "set training.trl.lr_scheduler_kwargs, or use cosine"
        raise RecipeError(
            f"training.lr_scheduler_type={name}{given}: transformers refuses it ({first_line(error)}): {fix}"
        ) from None


def validate_vllm(cfg: Config) -> None:
    """The vllm section against the model section; checks that need the number of processes are in recipe.distributed."""
    m, v = cfg.model, cfg.vllm
    problems = [
        (
            v.mode not in ("colocate", "server"),
            f"vllm.mode={v.mode!r}: use colocate (vLLM inside each training process) or server (a separate `vllm serve`)",
        ),
        (
            v.tensor_parallel_size < 1,
            f"vllm.tensor_parallel_size={v.tensor_parallel_size}: use 1, or the number of GPUs one vLLM engine spans",
        ),
        (not 0 < v.server_port < 65536, f"vllm.server_port={v.server_port}: use a TCP port, e.g. 8000"),
        (
            v.mode == "server" and not m.fast_inference,
            "vllm.mode=server generates on a vLLM server: set model.fast_inference=true, or leave vllm.mode at colocate",
        ),
        # Unsloth holds its own vLLM engine and makes TRL use it, whatever vllm.mode says.
        (
            v.mode == "server" and m.backend == "unsloth",
            "vllm.mode=server needs model.backend=trl (or auto): Unsloth always generates with its own colocated vLLM",
        ),
        (
            v.mode == "server" and v.tensor_parallel_size > 1,
            f"vllm.tensor_parallel_size={v.tensor_parallel_size} applies to colocate mode: leave it at 1 and start the server with `vllm serve --tensor-parallel-size {v.tensor_parallel_size}`",
        ),
        (
            v.tensor_parallel_size > 1 and not m.fast_inference,
            f"vllm.tensor_parallel_size={v.tensor_parallel_size} needs model.fast_inference=true: without vLLM nothing is split",
        ),
        (
            v.tensor_parallel_size > 1 and m.backend == "unsloth",
            f"vllm.tensor_parallel_size={v.tensor_parallel_size} needs model.backend=trl: Unsloth's vLLM runs on one GPU",
        ),
    ]
    for failed, message in problems:
        if failed:
            raise RecipeError(message)


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def dotted(tree: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of dotted keys, as --set names them: {"training.learning_rate": 0.0002, ...}."""
    keys: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            keys.update(dotted(value, f"{prefix}{key}."))
        else:
            keys[f"{prefix}{key}"] = value
    return keys


# Settings that say how a leg started, not what it trains: a resumed leg has output.resume=auto, the first never.
LEG_KEYS = ("output.resume",)


def config_changes(saved: Path, cfg: Config) -> list[str]:
    """'key old -> new' for each setting of ``cfg`` that the config file ``saved`` has otherwise (LEG_KEYS aside).
    A missing file has no settings to differ; one that is not a YAML mapping differs in every key."""
    if not saved.exists():
        return []
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # UnicodeDecodeError is a ValueError
        old = None
    old = dotted(old) if isinstance(old, dict) else {}
    return [
        f"{key} {old.get(key, 'unset')} -> {value}"
        for key, value in dotted(dataclasses.asdict(cfg)).items()
        if key not in LEG_KEYS and old.get(key, object()) != value
    ]
