"""Several processes (one per GPU) under torchrun or accelerate launch: who they are and how a step splits.

Read from the environment the launchers set (WORLD_SIZE, RANK), so it is known before torch.distributed
starts and before any model loads: the split is checked, and only one process prints and writes.
"""

from __future__ import annotations

import os

from recipe.config import Config
from recipe.errors import RecipeError


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    try:
        return int(text)
    except ValueError:
        raise RecipeError(
            f"environment variable {name}={text!r} is not a number: launch with torchrun or accelerate launch, or unset it"
        ) from None


def world_size() -> int:
    """Processes in this run: 1 for a plain ``python train_grpo.py``."""
    return max(1, _env_int("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """The process that prints the plan and writes metrics, samples, plots, config and adapter."""
    return _env_int("RANK", 0) == 0


def _smallest_multiple(start: int, factor: int, world: int) -> int:
    """The smallest n >= start with n * factor divisible by world (n = world always is)."""
    return next(n for n in range(start, start + world + 1) if n * factor % world == 0)


def per_device_batch(cfg: Config, world: int) -> int:
    """Completions each process trains on per optimizer step, so the whole run keeps prompts_per_step.

    TRL's per_device_train_batch_size counts completions on one process; a prompt's group of
    num_generations may span processes, since TRL gathers every reward before the advantages.
    """
    t = cfg.training
    completions = t.prompts_per_step * t.num_generations
    if completions % world:
        prompts = _smallest_multiple(t.prompts_per_step, t.num_generations, world)
        generations = _smallest_multiple(t.num_generations, t.prompts_per_step, world)
        raise RecipeError(
            f"training.prompts_per_step={t.prompts_per_step} x training.num_generations={t.num_generations} = {completions} "
            f"completions cannot be split over {world} processes: use training.prompts_per_step={prompts} "
            f"or training.num_generations={generations}"
        )
    return completions // world


def check_vllm_split(cfg: Config, world: int) -> None:
    """Colocated vLLM engines span vllm.tensor_parallel_size processes each, so that size must divide the run."""
    tp = cfg.vllm.tensor_parallel_size
    if cfg.model.fast_inference and cfg.vllm.mode == "colocate" and world % tp:
        fits = ", ".join(str(n) for n in range(1, world + 1) if world % n == 0)
        raise RecipeError(
            f"vllm.tensor_parallel_size={tp} must divide the {world} training processes: use one of {fits}, "
            f"or launch a multiple of {tp} processes"
        )


_accepting_indexed_cpu = False


def _restore_indexed_cpu(storage, location: str):
    return storage if location.startswith("cpu:") else None


def accept_indexed_cpu_locations() -> None:
    """Let torch.load map tensors to ``cpu:0``, so several CPU processes can resume from a checkpoint.

    accelerate names each CPU process's device cpu:0, and transformers loads the optimizer state with
    map_location=args.device when world_size > 1; torch's own CPU deserializer accepts only "cpu" and
    fails with "don't know how to restore data location ... (tagged with cpu:0)". GPU runs (cuda:N) never
    reach this. The tagger returns None, so saving is unchanged.
    """
    global _accepting_indexed_cpu
    import torch.serialization

    if not _accepting_indexed_cpu:
        torch.serialization.register_package(11, lambda storage: None, _restore_indexed_cpu)
        _accepting_indexed_cpu = True
