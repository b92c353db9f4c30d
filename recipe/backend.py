"""The two model stacks: Unsloth + vLLM on a CUDA GPU, or plain transformers + PEFT anywhere.

Unsloth patches transformers, trl and peft when it is imported, so ``import_unsloth`` must run
before any of them is imported; every entry point calls it right after reading its config.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from recipe import distributed
from recipe.config import Config, ModelConfig
from recipe.data import stop_token_ids
from recipe.errors import RecipeError, first_line


def resolve_backend(cfg: Config, world: int | None = None, cuda: bool | None = None) -> str:
    """Pick the backend for ``world`` processes (default: the launcher's) and reject settings this machine
    (or, with ``cuda`` given, a machine with or without a CUDA GPU) cannot run.

    auto means Unsloth on one CUDA GPU and trl otherwise: Unsloth trains in one process only (its vLLM
    engine hangs under DDP, and fast_inference raises under FSDP2), and it cannot use a vLLM server.
    """
    import torch

    world = distributed.world_size() if world is None else world
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cfg.model.backend != "auto":
        backend = cfg.model.backend
    else:
        backend = "unsloth" if cuda and world == 1 and cfg.vllm.mode == "colocate" else "trl"
    if backend == "unsloth" and world > 1:
        raise RecipeError(
            f"model.backend=unsloth trains in one process, and this run has {world}: use model.backend=trl (or auto) on several GPUs"
        )
    if not cuda:
        no_gpu = [
            (
                backend == "unsloth",
                "model.backend=unsloth needs a CUDA GPU: use model.backend=trl (or auto) on this machine",
            ),
            (
                cfg.model.fast_inference,
                "model.fast_inference=true needs vLLM on a CUDA GPU: set model.fast_inference=false on this machine",
            ),
            (
                cfg.model.load_in_4bit,
                "model.load_in_4bit=true needs bitsandbytes on a CUDA GPU: set model.load_in_4bit=false on this machine",
            ),
            (
                "8bit" in cfg.training.optim,
                f"training.optim={cfg.training.optim} needs bitsandbytes on a CUDA GPU: use adamw_torch on this machine",
            ),
        ]
        for failed, message in no_gpu:
            if failed:
                raise RecipeError(message)
    return backend


def describe_backend(cfg: Config, backend: str, world: int) -> str:
    """The banner's backend, with why auto chose it."""
    if cfg.model.backend != "auto" or backend == "unsloth":
        return backend
    if world > 1:
        return f"{backend} (auto: {world} processes; Unsloth trains on one GPU only)"
    if cfg.vllm.mode == "server":
        return f"{backend} (auto: vllm.mode=server; Unsloth only colocates vLLM)"
    return f"{backend} (auto: no CUDA GPU)"


def trl_vllm_fraction(utilization: float, free_bytes: int, total_bytes: int) -> float:
    """model.gpu_memory_utilization (vLLM's share of the memory free at start, as Unsloth reads it)
    as TRL's vllm_gpu_memory_utilization, which vLLM reads as a share of the whole card.

    On a card with nothing else on it the two barely differ; on a shared or partly used card (or the
    bench's capped one) the same YAML would otherwise ask TRL's vLLM for far more than is free.
    """
    return utilization * free_bytes / total_bytes


def vllm_card_fraction(utilization: float) -> float:
    """trl_vllm_fraction on this process's GPU, now (before any model loads); unchanged without one."""
    import torch

    if not torch.cuda.is_available():
        return utilization
    # Each rank's GPU under torchrun/accelerate; before the Trainer sets the device, the current one is 0.
    free, total = torch.cuda.mem_get_info(int(os.environ.get("LOCAL_RANK", 0)))
    return trl_vllm_fraction(utilization, free, total)


def quiet_hub() -> None:
    """Stop the hub client from retrying for minutes when it cannot be reached; a local path never needs it.

    Read by huggingface_hub when it is imported, so entry points call this first.
    """
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")


# Unsloth's vLLM runs the adapter beside the weights it shares with training: 3 extra kernels per adapted
# layer per decoded token (432 on the 3B). With this switch it folds the adapter into those weights for each
# rollout and restores the exact base after, so vLLM decodes as the base model does: 0.25 against 0.30 s of
# generation a step on the 3B; with fused AdamW, the same held-out accuracy (bench/LOG.md, 2026-12-07). It cannot fold
# into 4-bit weights. Unsloth reads it when the model loads; exported as 0, it stays off.
FOLD_SWITCH = "UNSLOTH_VLLM_MERGED_ROLLOUT"


def foldable(model: ModelConfig) -> bool:
    """Unsloth can fold the adapter for rollouts: it generates with vLLM from 16-bit weights."""
    return model.fast_inference and not model.load_in_4bit


def folds_rollouts(cfg: Config, backend: str) -> bool:
    """Whether training's vLLM generates from the adapter folded into its weights: Unsloth on a foldable
    model, unless the user exported the switch as anything but 1."""
    return backend == "unsloth" and foldable(cfg.model) and os.environ.get(FOLD_SWITCH, "1").strip() == "1"


def import_unsloth(model: ModelConfig, training: bool = False) -> None:
    """Import Unsloth, which must come before transformers and trl to patch them. ``training``: fold the
    rollouts' adapter where it can (evaluation generates as the learning check measured it: unfolded)."""
    # Its usage statistics download stalls for minutes where the hub is unreachable.
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    if training and foldable(model):
        os.environ.setdefault(FOLD_SWITCH, "1")
    if not model.compile:
        # torch.compile unrolls Unsloth's chunked log-prob function over batch rows x 4 chunks: the
        # notebook's first step spent 3 to 4 minutes compiling it, and 32 rows crashed the compiler.
        os.environ["UNSLOTH_COMPILE_DISABLE"] = "1"
    import unsloth  # noqa: F401


def generation_batch(cfg: Config) -> int:
    """Completions one process's vLLM samples at once, as TRL counts them for its own engine."""
    return distributed.per_device_batch(cfg, distributed.world_size()) * cfg.training.steps_per_generation


# vLLM without torch.compile, which cost the 3B's first start 27-38 s (Dynamo, Inductor; about 7 s once
# vLLM's compile cache holds the graph): decoding, nearly all of generation, still replays full CUDA
# graphs and only the prefill runs eager. Measured 2026-12-02d: the same 0.600 s/step, start-up 49 s
# against 72 s. Graphs are captured with the adapter active, as it always is while training.
VLLM_NO_COMPILE = {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY", "cudagraph_specialize_lora": False}


def vllm_engine_kwargs(cfg: Config, max_num_seqs: int | None) -> dict:
    """What Unsloth's loader passes on to vLLM beyond its own choices; nothing without vLLM.

    model.vllm_compile=true leaves the compilation to Unsloth (torch.compile, piecewise and full graphs).
    The trl backend's engine is built by TRL with vLLM's defaults, which the key does not change.
    """
    if not cfg.model.fast_inference:
        return {}
    kwargs = {"max_num_seqs": max_num_seqs} if max_num_seqs else {}
    if not cfg.model.vllm_compile:
        kwargs["compilation_config"] = dict(VLLM_NO_COMPILE)
    return kwargs


def unsloth_source(name: str) -> dict:
    """``from_pretrained``'s model_name and local_files_only for a hub id or a local folder."""
    local = Path(name).expanduser()
    # An absolute path keeps Unsloth from looking a relative "a/b" folder up as a hub name.
    return {"model_name": str(local.resolve()) if local.is_dir() else name, "local_files_only": local.is_dir()}


def load_model_unsloth(cfg: Config, max_num_seqs: int | None = None):
    """Unsloth's LoRA model; ``max_num_seqs`` bounds vLLM's batch and with it the CUDA graphs captured
    at start (None: Unsloth picks it from the memory free)."""
    from unsloth import FastLanguageModel  # patches transformers/trl/peft, so it is imported first

    model, tokenizer = FastLanguageModel.from_pretrained(
        **unsloth_source(cfg.model.name),
        max_seq_length=cfg.model.max_seq_length,
        load_in_4bit=cfg.model.load_in_4bit,
        fast_inference=cfg.model.fast_inference,
        max_lora_rank=cfg.lora.r,
        gpu_memory_utilization=cfg.model.gpu_memory_utilization,
        **vllm_engine_kwargs(cfg, max_num_seqs),
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
    from transformers import AutoModelForCausalLM, set_seed

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(cfg.model.name, dtype=dtype)
    # The LoRA's random init follows training.seed, as Unsloth's random_state does: a rerun trains the same weights.
    set_seed(cfg.training.seed)
    peft_config = PeftLoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        target_modules=cfg.lora.target_modules,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config), tokenizer


def load_model(cfg: Config, backend: str, tokenizer):
    """The LoRA model and the tokenizer to train with: Unsloth returns its own patched tokenizer."""
    if backend == "unsloth":
        # Sized as TRL sizes its own vLLM. Left to itself, Unsloth picks the batch from the memory free
        # (32 sequences for the 3B on a 24 GB card, up to 256 on larger ones) and vLLM captures CUDA
        # graphs for batches larger than a training step ever generates.
        model, tokenizer = load_model_unsloth(cfg, max_num_seqs=generation_batch(cfg))
    else:
        model, tokenizer = load_model_trl(cfg, tokenizer)
    model.generation_config.eos_token_id = stop_token_ids(tokenizer)
    return model, tokenizer


def keep_base_weights_exact(trainer) -> bool:
    """On the trl backend, send vLLM base + LoRA computed aside, leaving the frozen base weights untouched.

    Before every weight sync TRL merges the adapter into the base weights in place and subtracts it
    afterwards. In bf16 that round trip does not give back the same numbers, so the "frozen" base
    drifts a little at every sync and the drift compounds (trl#6688; measured here: with LoRA B of
    1e-3, 100 syncs change 2% of a layer's weights). vLLM receives the same merged values either way.
    Plain LoRA on unquantised layers only; anything else (DoRA, LoRA bias, 4-bit, FSDP) keeps TRL's
    path. True when the exact path is in use.
    """
    import functools

    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from torch import nn
    from trl.generation.vllm_generation import VLLMGeneration

    generation = getattr(trainer, "vllm_generation", None)
    if not isinstance(generation, VLLMGeneration) or not isinstance(generation.model, PeftModel):
        return False
    layers = [m for m in generation.model.modules() if isinstance(m, LoraLayer)]
    plain = all(
        type(m.get_base_layer()) in (nn.Linear, nn.Embedding) and not m.lora_variant and not any(m.lora_bias.values())
        for m in layers
    )
    if not layers or not plain or generation._dist.is_fsdp:
        return False
    lora_of = {id(m.get_base_layer().weight): m for m in layers}
    generation._iter_named_params = functools.partial(_named_params_merged_aside, generation, lora_of)
    return True


def _named_params_merged_aside(self, lora_of: dict):
    """VLLMGeneration._iter_named_params's PEFT branch (names, skips, gathering), with W + delta made aside.

    ``lora_of`` maps id(base weight) to its LoRA layer.
    """
    model = self.model
    with self._dist.gather_params(list(model.parameters())):
        for name, param in model.named_parameters():
            name = name.removeprefix("base_model.model.").replace(".base_layer", "")
            if model.prefix in name or "original_module" in name:
                continue
            name = self._fix_param_name_to_vllm(name, extra_prefixes=["modules_to_save.default."])
            layer = lora_of.get(id(param))
            yield name, param.data if layer is None or layer.merged else merged_weight(layer, param.data)


def merged_weight(layer, weight):
    """What peft's merge() leaves in ``weight`` (one rounding per active adapter), as a new tensor."""
    for adapter in layer.active_adapters:
        if adapter in layer.lora_A or adapter in getattr(layer, "lora_embedding_A", {}):
            weight = (weight + layer.get_delta_weight(adapter)).to(weight.dtype)
    return weight


# What transformers, safetensors and torch raise for weights that do not load: damaged or mismatched files, and a
# PyTorch pickle torch.load refuses (its UnpicklingError is none of the others).
LOAD_ERRORS = (OSError, ValueError, RuntimeError, pickle.UnpicklingError)


def load_failure(cfg: Config, error: Exception) -> str:
    """The one line for a model that did not load: out of GPU memory is the config's doing, not the weights'."""
    first = first_line(error, 200)
    four_bit = "" if cfg.model.load_in_4bit else "set model.load_in_4bit: true or "
    if "memory for the cache blocks" in first:  # vLLM: its share holds the weights and nothing more
        return (
            f"vLLM's share of the GPU memory (model.gpu_memory_utilization={cfg.model.gpu_memory_utilization}) holds "
            f"model.name={cfg.model.name}'s weights but no KV cache: raise model.gpu_memory_utilization, "
            f"{four_bit}pick a smaller model; the memory forecast above says which fits"
        )
    if "out of memory" in first.lower():  # torch.OutOfMemoryError, or CUDA's own message in a RuntimeError
        return (
            f"the GPU ran out of memory loading model.name={cfg.model.name} ({type(error).__name__}: {first}): "
            f"lower model.gpu_memory_utilization, {four_bit}pick a smaller model; the memory forecast above says which fits"
        )
    return weights_failure(f"model.name={cfg.model.name}", error)


def weights_failure(what: str, error: Exception) -> str:
    """The one line for weights that did not load, not for want of memory; ``what`` names them."""
    return f"could not load the weights of {what} ({type(error).__name__}: {first_line(error, 200)}): check the model folder or hub id"
