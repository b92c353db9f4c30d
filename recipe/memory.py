"""GPU memory forecast for a config, from the model's shape alone: nothing is loaded, no torch needed.

The peak of a GRPO run with vLLM is mostly vLLM's share (``model.gpu_memory_utilization`` x the
memory free when the model starts loading: the weights and the KV cache) plus what training adds on
top (LoRA weights, gradients and optimizer states, activations, logits). The terms below are simple
physics; the three constants marked "fitted" were set against measured peaks (tests/test_memory.py
holds that table and each row's error).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

GIB = 2**30

# Published config.json values of the base models, in the keys transformers.Qwen2Config takes.
# The Instruct models have the same shapes.
_QWEN_SMALL = {"vocab_size": 151936, "tie_word_embeddings": True, "rope_theta": 1e6, "rms_norm_eps": 1e-6}
_QWEN_LARGE = {"vocab_size": 152064, "tie_word_embeddings": False, "rope_theta": 1e6, "max_position_embeddings": 131072}
QWEN25_SHAPES: dict[str, dict] = {
    "Qwen/Qwen2.5-0.5B": {
        **_QWEN_SMALL,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
    },
    "Qwen/Qwen2.5-1.5B": {
        **_QWEN_SMALL,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 131072,
    },
    "Qwen/Qwen2.5-3B": {
        **_QWEN_SMALL,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
    },
    "Qwen/Qwen2.5-7B": {
        **_QWEN_LARGE,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "rms_norm_eps": 1e-6,
    },
    "Qwen/Qwen2.5-14B": {
        **_QWEN_LARGE,
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5,
    },
    "Qwen/Qwen2.5-32B": {
        **_QWEN_LARGE,
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "num_hidden_layers": 64,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5,
    },
}
SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
# Hub variants of the same weights: unsloth/Qwen2.5-7B-bnb-4bit, Qwen/Qwen2.5-7B-Instruct, ...
_VARIANT_SUFFIXES = ("-unsloth-bnb-4bit", "-bnb-4bit", "-Instruct")

CUDA_CONTEXT_GIB = 0.5  # this process's CUDA context, taken before the model loads (H100 with torch 2.x)
VLLM_OVERHEAD_GIB = 0.6  # inside vLLM's share but not KV cache: its profiling activations, non-torch memory
# Fitted: vLLM's CUDA graphs, cuBLAS workspaces and allocator slack outside vLLM's share.
RUNTIME_GIB = 1.2
BNB_RUNTIME_GIB = 0.27  # fitted: what 4-bit added over 16-bit at equal settings (dequantisation buffers)
# Fitted: bytes per (generated row x token x layer x hidden unit), 16-bit; ~1.3 x one layer input per layer.
ACTIVATION_BYTES = 2.55
# Unsloth computes log-probs in chunks: about half the fp32 logits of a training batch live at once;
# with model.compile the fused kernel keeps next to none (measured 0.5 GiB lower).
UNSLOTH_LOGIT_FRACTION = 0.5
# Plain TRL: bf16 logits, their gradient and an fp32 log-softmax row: ~8 bytes per logit.
TRL_LOGIT_BYTES = 8
# recipe/graphed_step.py's CUDA graphs hold their memory for the whole run, in a pool of their own: ~9 bytes a
# logit of a step padded to max_completion_length, fitted to the 3B's 17.08 GiB (2026-12-07j, log-probs 256 rows
# of logits at a time; 18.47 when the graphs held the step's logits whole). One shape was measured, so how much
# of it scales with the logits and how much is the pool's fixed part is not known; and one fp32 gradient per
# LoRA weight, which they write into.
GRAPH_LOGIT_BYTES = 9
# recipe/graphed_scoring.py's graphs (the old policy's and the reference's log-probs, one per role) add to that pool
# and to the allocator's cache: ~30 bytes a scored row-token per MLP unit and role, fitted to the 3B's 18.05 GiB
# against 17.08 without them in the same sitting (2026-12-07k: 6 rows of 288 tokens, two roles). One shape measured.
SCORING_GRAPH_BYTES = 30
# Optimizer state bytes per trainable parameter; unknown optimizers are taken as Adam in fp32.
OPTIMIZER_BYTES = {
    "paged_adamw_8bit": 2,
    "adamw_8bit": 2,
    "adamw_bnb_8bit": 2,
    "paged_adamw_32bit": 8,
    "adamw_torch": 8,
    "adamw_torch_fused": 8,
    "adafactor": 1,
    "sgd": 0,
}
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit weights + double-quantised absmax per 64-weight block
LORA_BYTES = 4 + 4  # fp32 weights (PEFT keeps adapters in fp32) and their fp32 gradients
HEADROOM_GIB = 0.5  # a suggested fix must leave this much free: fragmentation varies run to run


@dataclass
class Forecast:
    """Predicted peak GPU memory of a config on a card; GiB throughout. ``peak_gib`` is None when unknown."""

    card_gib: float
    peak_gib: float | None
    breakdown: dict[str, float] = field(default_factory=dict)
    kv_cache_gib: float | None = None
    fits: bool | None = None
    problem: str = ""  # why it does not fit, or why it cannot be predicted
    advice: str = ""  # the key to change first when it does not fit

    def lines(self) -> list[str]:
        if self.peak_gib is None:
            return [f"cannot predict GPU memory: {self.problem}"]
        parts = ", ".join(f"{name} {gib:.1f}" for name, gib in self.breakdown.items())
        verdict = "fits" if self.fits else "does NOT fit"
        lines = [f"forecast peak {self.peak_gib:.1f} GiB of {self.card_gib:.1f}: {verdict} ({parts})"]
        if self.kv_cache_gib is not None and self.kv_cache_gib > 0:
            lines.append(f"vLLM KV cache {self.kv_cache_gib:.1f} GiB inside its share")
        elif self.kv_cache_gib is not None:  # the warning below says why: the share is smaller than the weights
            lines.append("vLLM KV cache: none, its share is used up by the weights")
        if not self.fits:
            lines.append(f"warning: {self.problem}; change first: {self.advice}")
        return lines


def model_shape(name: str) -> dict | None:
    """The shape of ``model.name``: a local folder's config.json, a known hub id, or None."""
    config_file = Path(name).expanduser() / "config.json"
    if config_file.is_file():
        try:
            raw = json.loads(config_file.read_text())
        except (OSError, ValueError):
            return None
        raw = raw.get("text_config", raw)
        if not all(isinstance(raw.get(key), int) for key in SHAPE_KEYS):
            return None
        shape = {key: raw[key] for key in SHAPE_KEYS}
        shape["num_key_value_heads"] = raw.get("num_key_value_heads") or raw["num_attention_heads"]
        shape["tie_word_embeddings"] = bool(raw.get("tie_word_embeddings", False))
        return shape
    base = name.rsplit("/", 1)[-1].lower()
    for suffix in _VARIANT_SUFFIXES:
        base = base.removesuffix(suffix.lower())
    for hub_id, shape in QWEN25_SHAPES.items():
        if hub_id.rsplit("/", 1)[-1].lower() == base:
            return dict(shape)
    return None


def _linear_shapes(shape: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection of one decoder layer."""
    hidden, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = hidden // shape["num_attention_heads"] * shape["num_key_value_heads"]
    return {
        "q_proj": (hidden, hidden),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (hidden, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }


def parameter_counts(shape: dict) -> tuple[int, int]:
    """(parameters in the decoder layers' projections, all other parameters: embeddings, head, norms, biases)."""
    layers, hidden = shape["num_hidden_layers"], shape["hidden_size"]
    linears = _linear_shapes(shape)
    projection = layers * sum(i * o for i, o in linears.values())
    biases = layers * (linears["q_proj"][1] + 2 * linears["k_proj"][1])  # Qwen2 has q, k, v biases
    norms = (2 * layers + 1) * hidden
    embeddings = shape["vocab_size"] * hidden * (1 if shape.get("tie_word_embeddings", False) else 2)
    return projection, embeddings + norms + biases


def lora_parameters(shape: dict, r: int, target_modules: list[str]) -> int:
    linears = _linear_shapes(shape)
    return shape["num_hidden_layers"] * sum(r * sum(linears[m]) for m in target_modules if m in linears)


def weights_gib(shape: dict, four_bit: bool) -> float:
    """The base model's weights: 16-bit, or nf4 projections with 16-bit embeddings, head and norms."""
    projection, other = parameter_counts(shape)
    return (projection * (NF4_BYTES if four_bit else 2) + other * 2) / GIB


def kv_bytes_per_token(shape: dict) -> int:
    head_dim = shape["hidden_size"] // shape["num_attention_heads"]
    return 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * head_dim * 2


def forecast(
    cfg,
    shape: dict | None,
    card_gib: float,
    *,
    free_gib: float | None = None,
    prompt_tokens: int | None = None,
    advise: bool = True,
) -> Forecast:
    """The predicted peak of ``cfg`` (a recipe Config) on a card of ``card_gib``.

    ``free_gib``: memory free when the model starts loading (default: the card less a CUDA context).
    ``prompt_tokens``: the longest prompt expected (default: data.max_prompt_length, the worst case).
    """
    if shape is None:
        return Forecast(
            card_gib,
            None,
            problem=f"model.name={cfg.model.name} is neither a local folder with a "
            f"config.json nor one of {', '.join(QWEN25_SHAPES)}",
        )
    m, t = cfg.model, cfg.training
    free = card_gib - CUDA_CONTEXT_GIB if free_gib is None else free_gib
    backend = "trl" if m.backend == "trl" else "unsloth"  # auto means unsloth on a CUDA card
    # load_model_trl always loads 16-bit weights; only Unsloth quantises.
    four_bit = m.load_in_4bit and backend == "unsloth"
    tokens = (cfg.data.max_prompt_length if prompt_tokens is None else prompt_tokens) + t.max_completion_length
    train_rows = t.prompts_per_step * t.num_generations
    generated_rows = train_rows * t.steps_per_generation
    weights = weights_gib(shape, four_bit)
    lora = lora_parameters(shape, cfg.lora.r, cfg.lora.target_modules)
    layers, hidden = shape["num_hidden_layers"], shape["hidden_size"]

    parts = {"in use before loading": card_gib - free}
    kv_cache = None
    if m.fast_inference:
        share = m.gpu_memory_utilization * free
        kv_cache = share - weights - VLLM_OVERHEAD_GIB
        parts["vLLM share"] = share
        if backend == "trl":  # TRL's vLLM holds its own copy; the trained model is another
            parts["training weights"] = weights
    else:
        parts["weights"] = weights
        parts["generation KV cache"] = generated_rows * tokens * kv_bytes_per_token(shape) / GIB
    parts["LoRA + grads + optimizer"] = lora * (LORA_BYTES + OPTIMIZER_BYTES.get(t.optim, 8)) / GIB
    if cfg.lora.gradient_checkpointing is False:
        intermediate = shape["intermediate_size"]
        if backend == "trl":
            # Plain transformers keeps, in bytes a token: each RMSNorm's fp32 input and bf16 output (2 x 6h),
            # rotary q and k (2h), SDPA's q, k and v with the KV heads repeated and its output (8h), the
            # o_proj input (2h), and SwiGLU's gate, silu(gate), up and product (8i). Measured 2026-12-02d:
            # the 3B ran out of memory on a 24 GB card in its first backward pass.
            per_token = layers * (24 * hidden + 8 * intermediate)
        else:
            # Unsloth keeps about five hidden-wide bf16 tensors a token (the projections' inputs, the
            # norms', attention's) and two MLP-wide ones (SwiGLU's gate and up; its product is
            # recomputed). Measured on the 3B without checkpointing: 15.6 GiB, this term 3.4 of it.
            per_token = layers * (5 * hidden + 2 * intermediate) * 2
        parts["activations"] = (
            generated_rows * tokens * layers * hidden * ACTIVATION_BYTES + train_rows * tokens * per_token
        ) / GIB
    else:
        parts["activations"] = generated_rows * tokens * layers * hidden * ACTIVATION_BYTES / GIB
    logits = train_rows * t.max_completion_length * shape["vocab_size"]
    # Where recipe/graphed_step.py takes the step (it declines checkpointing and losses but grpo).
    graphed = (
        backend == "unsloth"
        and not four_bit
        and t.cuda_graphs
        and cfg.lora.gradient_checkpointing is False
        and t.loss_type == "grpo"
    )
    if backend == "trl":
        parts["logits"] = logits * TRL_LOGIT_BYTES / GIB
    elif graphed:
        parts["logits"] = logits * GRAPH_LOGIT_BYTES / GIB
        parts["CUDA graphs' gradients"] = lora * 4 / GIB
        roles = (t.beta != 0) + (t.steps_per_generation > 1)  # the reference's log-probs; the old policy's
        scored = roles * train_rows * tokens * shape["intermediate_size"]
        if scored:
            parts["CUDA graphs' scoring"] = scored * SCORING_GRAPH_BYTES / GIB
    else:
        parts["logits"] = 0.0 if m.compile else logits * 4 * UNSLOTH_LOGIT_FRACTION / GIB
    parts["runtime"] = RUNTIME_GIB + (BNB_RUNTIME_GIB if four_bit else 0.0)
    peak = sum(parts.values())

    result = Forecast(card_gib, peak, {k: round(v, 2) for k, v in parts.items()}, kv_cache, fits=True)
    one_sequence = m.max_seq_length * kv_bytes_per_token(shape) / GIB
    if kv_cache is not None and kv_cache < one_sequence:
        result.fits = False
        result.problem = (
            f"vLLM's share ({parts['vLLM share']:.1f} GiB) cannot hold the {weights:.1f} GiB of weights "
            f"and a KV cache for one {m.max_seq_length}-token sequence"
        )
    elif peak > card_gib:
        result.fits = False
        result.problem = f"the peak exceeds the card by {peak - card_gib:.1f} GiB"
    if advise and not result.fits:
        result.advice = advice(cfg, shape, card_gib, free, tokens - t.max_completion_length)
    return result


def _with(cfg, section: str, **changes):
    return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **changes)})


def _fits_well(cfg, shape: dict, card_gib: float, free: float, prompt_tokens: int) -> bool:
    """Fits with headroom and, with vLLM, a KV cache for the whole generation batch (no queueing)."""
    f = forecast(cfg, shape, card_gib, free_gib=free, prompt_tokens=prompt_tokens, advise=False)
    t = cfg.training
    batch = t.prompts_per_step * t.num_generations * t.steps_per_generation * cfg.model.max_seq_length
    kv_ok = f.kv_cache_gib is None or f.kv_cache_gib >= batch * kv_bytes_per_token(shape) / GIB
    return bool(f.fits) and f.peak_gib <= card_gib - HEADROOM_GIB and kv_ok


def _utilizations(cfg, shape, card_gib, free, prompt_tokens) -> list[float]:
    """The values of model.gpu_memory_utilization, in steps of 0.05 from 0.95 down, that fit well."""
    steps = [round(u / 100, 2) for u in range(95, 9, -5)]
    return [
        u
        for u in steps
        if _fits_well(_with(cfg, "model", gpu_memory_utilization=u), shape, card_gib, free, prompt_tokens)
    ]


def _change_that_fits(changed, change: str, shape: dict, card_gib: float, free: float, prompt_tokens: int):
    """``change`` if ``changed`` fits well, with the vLLM share that makes it fit when vLLM is on; else None."""
    if not changed.model.fast_inference:
        return change if _fits_well(changed, shape, card_gib, free, prompt_tokens) else None
    good = _utilizations(changed, shape, card_gib, free, prompt_tokens)
    return f"{change} (with model.gpu_memory_utilization: {good[0]})" if good else None


NO_SINGLE_CHANGE = "a smaller model: no single key change makes this one fit"


def advice(cfg, shape: dict, card_gib: float, free: float, prompt_tokens: int) -> str:
    """The first single change that the forecast says fits, in the order that costs least speed."""
    m, t = cfg.model, cfg.training
    fit_args = (shape, card_gib, free, prompt_tokens)
    if m.fast_inference:
        good = _utilizations(cfg, *fit_args)
        if good:  # the largest share that fits keeps vLLM's batch fastest
            verb = "lower" if good[0] < m.gpu_memory_utilization else "raise"
            return f"{verb} model.gpu_memory_utilization to {good[0]}"
    # 8-bit states are a quarter of fp32 Adam's for a host sync per LoRA tensor (0.015 s a step on the 3B).
    eight_bit = None
    if OPTIMIZER_BYTES.get(t.optim, 8) > OPTIMIZER_BYTES["paged_adamw_8bit"]:
        eight_bit = _with(cfg, "training", optim="paged_adamw_8bit")
        change = _change_that_fits(eight_bit, "set training.optim: paged_adamw_8bit", *fit_args)
        if change:
            return change
    if cfg.lora.gradient_checkpointing is False:  # recomputing activations costs less than 4-bit generation
        value, written = (True, "true") if m.backend == "trl" else ("unsloth", "unsloth")
        checkpointed = _with(cfg, "lora", gradient_checkpointing=value)
        change = _change_that_fits(checkpointed, f"set lora.gradient_checkpointing: {written}", *fit_args)
        if change:
            return change
    if not m.load_in_4bit and m.backend != "trl":
        change = _change_that_fits(_with(cfg, "model", load_in_4bit=True), "set model.load_in_4bit: true", *fit_args)
        if change:
            return change
    for spg in range(t.steps_per_generation - 1, 0, -1):
        if _fits_well(_with(cfg, "training", steps_per_generation=spg), *fit_args):
            return f"lower training.steps_per_generation to {spg}"
    for n in range(t.num_generations - 1, 1, -1):
        if _fits_well(_with(cfg, "training", num_generations=n), *fit_args):
            return f"lower training.num_generations to {n}"
    if eight_bit is not None:  # e.g. config.yaml on a 12 GB card: the 8-bit states and one more change
        rest = advice(eight_bit, *fit_args)
        if rest != NO_SINGLE_CHANGE:
            return f"set training.optim: paged_adamw_8bit, and {rest}"
    return NO_SINGLE_CHANGE


def forecast_here(cfg, card_gib: float | None) -> list[str]:
    """The forecast's lines for the GPU present, or for a card of ``card_gib`` (``--card-gib``)."""
    import torch

    free_gib = None
    if torch.cuda.is_available():
        free, total = (b / GIB for b in torch.cuda.mem_get_info())
        # Planning for a smaller card than this one: it cannot have more free than its size allows.
        free_gib = free if card_gib is None else min(free, card_gib - CUDA_CONTEXT_GIB)
        card_gib = total if card_gib is None else card_gib
        where = f"{torch.cuda.get_device_name(0)} {total:.1f} GiB, {free:.1f} free"
    elif card_gib is None:
        return ["CPU only: no GPU memory forecast (pass --card-gib 24 to forecast a 24 GiB card)"]
    else:
        where = f"a {card_gib:g} GiB card (no GPU here)"
    result = forecast(cfg, model_shape(cfg.model.name), card_gib, free_gib=free_gib)
    return [f"for {where}", *result.lines()]
