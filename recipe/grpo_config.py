"""TRL's GRPOConfig from the recipe's config: one table of GRPOConfig fields and the keys that set them.

Every other GRPOConfig field goes through ``training.trl`` as is, so the recipe need not mirror all of
TRL's knobs, and two places never set one value.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from pathlib import Path
from typing import Any

from recipe import backend as backends
from recipe import distributed, tracking
from recipe.config import Config, coerce
from recipe.errors import RecipeError, closest, first_line

# A field the recipe sets that training.trl may add keys to rather than replace: vLLM's SamplingParams (or
# transformers' generate keywords without vLLM) beside the recipe's stop tokens and SAMPLING.
EXTENDED = "generation_kwargs"
# What the recipe asks of a colocated vLLM beyond its stop tokens, which training.trl may change: TRL decodes
# the token ids itself and never reads the text vLLM's detokenizer makes of every sampled token (generation
# 5% faster, bench/LOG.md 2026-12-07f). vLLM's stop strings need that text; a vLLM server ignores the key.
SAMPLING = {"detokenize": False}


def table(cfg: Config, backend: str, stop_ids: list[int], world: int, cuda: bool) -> dict[str, tuple[str | None, Any]]:
    """GRPOConfig field -> (the recipe key that sets it, or None where the recipe fixes it; its value)."""
    m, v, t, o = cfg.model, cfg.vllm, cfg.training, cfg.output
    trl_engine = backend == "trl"
    return {
        "output_dir": ("output.dir", o.dir),
        "max_steps": ("training.max_steps", t.max_steps),
        "num_train_epochs": ("training.num_train_epochs", t.num_train_epochs),
        # prompts_per_step is the whole run's, so one YAML trains the same recipe on 1 or 8 GPUs.
        "per_device_train_batch_size": ("training.prompts_per_step", distributed.per_device_batch(cfg, world)),
        "gradient_accumulation_steps": (None, 1),
        "steps_per_generation": ("training.steps_per_generation", t.steps_per_generation),
        "num_generations": ("training.num_generations", t.num_generations),
        "max_completion_length": ("training.max_completion_length", t.max_completion_length),
        "temperature": ("training.temperature", t.temperature),
        "beta": ("training.beta", t.beta),
        "loss_type": ("training.loss_type", t.loss_type),
        "learning_rate": ("training.learning_rate", t.learning_rate),
        "adam_beta1": ("training.adam_beta1", t.adam_beta1),
        "adam_beta2": ("training.adam_beta2", t.adam_beta2),
        "weight_decay": ("training.weight_decay", t.weight_decay),
        # TRL reads a warmup_steps below 1 as a fraction of the run.
        "warmup_steps": ("training.warmup_ratio", t.warmup_ratio),
        "lr_scheduler_type": ("training.lr_scheduler_type", t.lr_scheduler_type),
        "optim": ("training.optim", t.optim),
        "max_grad_norm": ("training.max_grad_norm", t.max_grad_norm),
        "seed": ("training.seed", t.seed),
        "reward_weights": ("rewards", list(cfg.rewards.values())),
        "use_vllm": ("model.fast_inference", m.fast_inference),
        # vLLM stops only at EOS by default; a base model ends its chat turn with <|im_end|> instead.
        "generation_kwargs": (
            None,
            {"stop_token_ids": stop_ids, **(SAMPLING if v.mode == "colocate" else {})} if m.fast_inference else None,
        ),
        "vllm_mode": ("vllm.mode", v.mode),
        "vllm_tensor_parallel_size": ("vllm.tensor_parallel_size", v.tensor_parallel_size),
        "vllm_server_host": ("vllm.server_host", v.server_host),
        "vllm_server_port": ("vllm.server_port", v.server_port),
        # Unsloth builds its own engine from the share of free memory; TRL's reads a share of the whole card.
        "vllm_gpu_memory_utilization": (
            "model.gpu_memory_utilization",
            backends.vllm_card_fraction(m.gpu_memory_utilization) if trl_engine else m.gpu_memory_utilization,
        ),
        # Else TRL's own vLLM reserves KV cache for the model's whole context (32k tokens for Qwen2.5);
        # Unsloth builds its engine with max_seq_length itself.
        "vllm_max_model_length": ("model.max_seq_length", m.max_seq_length if trl_engine else None),
        "bf16": (None, cuda and _bf16_supported()),
        "use_cpu": (None, not cuda),
        # Unsloth applies its own checkpointing through get_peft_model.
        "gradient_checkpointing": (
            "lora.gradient_checkpointing",
            trl_engine and cfg.lora.gradient_checkpointing is not False,
        ),
        "logging_steps": ("output.logging_steps", o.logging_steps),
        "save_steps": ("output.save_steps", o.save_steps),
        # The Trainer would delete old checkpoints before the new one is marked complete (a kill in between
        # left none): runs.complete_checkpoint_saves keeps output.save_total_limit of them, after the marker.
        "save_total_limit": ("output.save_total_limit", None),
        "report_to": ("output.report_to", tracking.trackers(o.report_to) or "none"),
        # Named after the output folder, so runs tell apart in W&B and trackio.
        "run_name": (None, Path(o.dir).name),
        # trackio otherwise publishes a static Space to the Hub after training; logging stays local.
        "trackio_static_space_id": (None, False),
        "log_completions": (None, False),
    }


def _bf16_supported() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def grpo_args(cfg: Config, backend: str, stop_ids: list[int], world: int | None = None):
    """TRL's GRPOConfig from ours plus training.trl, for ``world`` processes (default: the launcher's).

    Built before the model loads: under DeepSpeed ZeRO-3 it is what makes from_pretrained shard the weights.
    """
    import torch

    world = distributed.world_size() if world is None else world
    fields = table(cfg, backend, stop_ids, world, torch.cuda.is_available())
    args = with_trl_keys(fields, cfg.training.trl)
    check_sampling(args)
    if args.world_size != world:
        raise RecipeError(
            f"WORLD_SIZE says {world} processes but accelerate sees {args.world_size}: launch with torchrun or accelerate launch, not a mix"
        )
    return args


def check_optimizer(args) -> None:
    """training.optim as transformers will build it, asked before the model loads: a name whose package
    (bitsandbytes, galore_torch, schedulefree, ...) is missing fails only once the Trainer makes its optimizer."""
    from transformers import Trainer

    try:
        Trainer.get_optimizer_cls_and_kwargs(args)
    except (ImportError, ValueError) as error:
        # GaLore, APOLLO and LOMO also want the model, which is not loaded yet: the Trainer checks that itself.
        if isinstance(error, ValueError) and "install" not in str(error) and "import" not in str(error):
            return
        name = getattr(args.optim, "value", args.optim)
        raise RecipeError(
            f"training.optim={name}: {_one_line(error)}: install it, or use adamw_torch_fused or adamw_torch"
        ) from None


def with_trl_keys(fields: dict[str, tuple[str | None, Any]], trl: dict):
    """GRPOConfig of the table's values and training.trl; a trl key the recipe sets, an unknown one or
    a value TRL rejects is a RecipeError naming the key."""
    from trl import GRPOConfig

    kwargs = {name: value for name, (_, value) in fields.items()}
    valid = [f.name for f in dataclasses.fields(GRPOConfig) if f.init]
    trl = dict(trl)
    if EXTENDED in trl:
        kwargs[EXTENDED] = _extended(kwargs[EXTENDED], trl.pop(EXTENDED))
    for key in trl:
        if key in fields:
            ours = fields[key][0]
            fix = f"set {ours} instead" if ours else f"the recipe sets it ({kwargs[key]!r}); remove it"
            raise RecipeError(f"training.trl.{key}: {fix}")
        if key not in valid:
            hint = closest(key, valid, "training.trl.", "use a field of trl.GRPOConfig")
            raise RecipeError(f"training.trl.{key} is not a GRPOConfig field: {hint}")
    trl = checked_trl_values(trl, typing.get_type_hints(GRPOConfig))
    try:
        return GRPOConfig(**kwargs, **trl)
    except (ValueError, TypeError) as error:
        together = error
    try:
        GRPOConfig(**kwargs)
    except (ValueError, TypeError) as error:
        raise RecipeError(_refused_recipe_values(fields, error)) from None
    # TRL names fields, not our keys: build again one key at a time to name the one it refuses.
    for key, value in trl.items():
        try:
            GRPOConfig(**kwargs, **{key: value})
        except (ValueError, TypeError) as error:
            raise RecipeError(f"training.trl.{key}={value!r}: {_one_line(error)}") from None
    raise RecipeError(f"training.trl: GRPOConfig refuses {', '.join(trl)} together: {_one_line(together)}")


# Ranges of training.trl values GRPOConfig takes unchecked, and the fix: outside them a run fails at its first
# step, or trains nothing (num_iterations=0 took 0 steps and saved the untrained adapter as done).
TRL_RANGES = {
    "num_iterations": (lambda v: v >= 1, "use 1 or more updates per generated batch"),
    "epsilon": (lambda v: v >= 0, "use a clipping range of 0 or more, e.g. 0.2"),
    "epsilon_high": (lambda v: v is None or v >= 0, "use a clipping range of 0 or more, e.g. 0.28, or null"),
    "top_p": (lambda v: 0 < v <= 1, "use a probability in (0, 1]; 1.0 keeps every token"),
    "top_k": (lambda v: v >= 0, "use a number of tokens, or 0 to keep them all"),
    "min_p": (lambda v: v is None or 0 <= v <= 1, "use a probability in [0, 1], or null"),
    "repetition_penalty": (lambda v: v > 0, "use a positive factor; 1.0 leaves the model as is"),
}


def checked_trl_values(trl: dict, hints: dict[str, Any]) -> dict:
    """training.trl's values coerced to GRPOConfig's annotations (as the recipe's own keys are to theirs), then
    held to TRL_RANGES; nan is never a setting."""
    checked = {key: coerce(value, hints[key], f"training.trl.{key}") for key, value in trl.items()}
    for key, value in checked.items():
        in_range, fix = TRL_RANGES.get(key, (lambda v: True, ""))
        if isinstance(value, float) and math.isnan(value):
            raise RecipeError(f"training.trl.{key}=nan: use a number")
        if not in_range(value):
            raise RecipeError(f"training.trl.{key}={value!r}: {fix}")
    return checked


def _refused_recipe_values(fields: dict[str, tuple[str | None, Any]], error: Exception) -> str:
    """GRPOConfig's refusal of the recipe's own values, naming the recipe keys of the fields its message names."""
    line = first_line(error)
    named = [(key, value) for name, (key, value) in fields.items() if key and re.search(rf"\b{name}\b", line)]
    if not named:
        return f"TRL's GRPOConfig refuses this config: {line}"
    keys = ", ".join(f"{key}={value!r}" for key, value in named)
    return f"{keys}: TRL's GRPOConfig refuses {'it' if len(named) == 1 else 'them'}: {line}"


def _extended(ours: dict | None, theirs: dict) -> dict:
    """generation_kwargs: the user's keys beside the recipe's stop tokens, which are refused, and over its
    SAMPLING; a key vLLM's sampling parameters lack is refused too (ours is set only when vLLM generates)."""
    if not isinstance(theirs, dict):
        raise RecipeError(
            f"training.trl.{EXTENDED} must be a mapping of generation keys, e.g. {{top_k: 20}}; got {theirs!r}"
        )
    taken = sorted((set(ours or {}) - set(SAMPLING)) & set(theirs))
    if taken:
        raise RecipeError(f"training.trl.{EXTENDED}.{taken[0]}: the recipe sets it ({ours[taken[0]]!r}); remove it")
    if ours is not None and theirs.get("stop"):
        if "detokenize" in theirs and not theirs["detokenize"]:
            raise RecipeError(
                f"training.trl.{EXTENDED}: vLLM's stop strings need its detokenizer: remove detokenize: false or stop"
            )
        theirs = {"detokenize": True, **theirs}
    params = sampling_params() if ours is not None else None
    valid = list(inspect.signature(params).parameters) if params is not None else None
    for key in theirs:
        if valid is not None and key not in valid:
            hint = closest(key, valid, otherwise="use a keyword of vllm.SamplingParams")
            raise RecipeError(f"training.trl.{EXTENDED}.{key} is not a vLLM sampling parameter: {hint}")
    return {**(ours or {}), **theirs}


# The recipe keys behind the sampling parameters TRL gives vLLM beside generation_kwargs.
SAMPLING_KEYS = {
    "temperature": "training.temperature",
    "max_tokens": "training.max_completion_length",
    **{name: f"training.trl.{name}" for name in ("top_p", "top_k", "min_p", "repetition_penalty")},
}


def check_sampling(args) -> None:
    """vLLM's SamplingParams as TRL's colocated engine builds them (trl/generation/vllm_generation.py), built now:
    vLLM checks the values (a temperature over 2, min_tokens over the completion length) only as a run
    generates, after the model has loaded. Without vLLM here (a dry run on a CPU), unchecked."""
    params = sampling_params() if args.use_vllm else None
    if params is None:
        return
    given = dict(args.generation_kwargs or {})
    if isinstance(given.get("structured_outputs"), dict):
        given.pop("structured_outputs")  # TRL makes it a StructuredOutputsParams, which the engine checks
    values = {
        "n": 1,
        "repetition_penalty": args.repetition_penalty,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": 0.0 if args.min_p is None else args.min_p,
        "max_tokens": args.max_completion_length,
        **given,
    }
    try:
        params(**values)
    except (ValueError, TypeError, AssertionError) as error:
        # str() of vLLM's validation errors adds "(parameter=..., value=...)"; args[0] is the message alone.
        line = first_line(ValueError(error.args[0])) if error.args else first_line(error)
        name = getattr(error, "parameter", None) or line.split(" ", 1)[0]
        key = (
            f"training.trl.{EXTENDED}.{name}" if name in given else SAMPLING_KEYS.get(name, f"training.trl.{EXTENDED}")
        )
        raise RecipeError(f"{key}: vLLM's sampling parameters refuse it: {line}") from None


def sampling_params() -> type | None:
    """vLLM's SamplingParams, which TRL builds from generation_kwargs; None without vLLM (a dry run on a CPU
    plans a GPU run)."""
    try:
        from vllm import SamplingParams
    except ImportError:
        return None
    return SamplingParams


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
