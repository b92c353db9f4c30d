"""A merged model folder as one GGUF file for llama.cpp and Ollama, written with the `gguf` package.

Unsloth's exporter clones and builds llama.cpp at run time, which needs the internet; this follows
llama.cpp's convert_hf_to_gguf.py for the two architectures the recipe trains (Qwen2ForCausalLM:
Qwen2.5 and the tiny model; LlamaForCausalLM: SmolLM2) in plain Python, offline. It writes f16 or
q8_0; k-quants (q4_k_m) need llama.cpp's own quantizer, run on the f16 file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recipe.errors import RecipeError
from recipe.tiny import ENDOFTEXT, IM_END, QWEN2_PRETOKENIZE_REGEX

GGUF_TYPES = ("f16", "q8_0")
GGUF_FILE = "model.gguf"
INSTALL = "pip install gguf"
ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
# llama.cpp rotates interleaved pairs for llama but halves (NEOX, as transformers does) for qwen2, so
# convert_hf_to_gguf.py permutes the q/k rows of llama models only.
PERMUTED_ARCHS = {"llama"}
# GGML_QNT_VERSION, which convert_hf_to_gguf.py writes as general.quantization_version.
QUANTIZATION_VERSION = 2


def check_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise RecipeError(f"--gguf needs the gguf package (llama.cpp's GGUF writer, pure Python): {INSTALL}")


def quantize_command(folder: str | Path) -> str:
    """llama.cpp's quantizer on an f16 export: what q4_k_m takes, since the gguf package writes no k-quants."""
    folder = Path(folder)
    return f"llama-quantize {folder / GGUF_FILE} {folder / 'model-q4_k_m.gguf'} Q4_K_M"


def card_note(gguf_type: str, folder: str | Path) -> str:
    """What the GGUF folder holds, for its model card."""
    return (
        f"`{GGUF_FILE}` holds the base model with the adapter merged in, as {gguf_type}, with the tokenizer, the chat "
        f"template and `<|im_end|>` as end of turn; `Modelfile` runs it in Ollama with the training system prompt and "
        f"greedy decoding. For q4_k_m, export with `--gguf-type f16` and run llama.cpp's quantizer: "
        f"`{quantize_command(folder)}`, then point the Modelfile's FROM at the new file."
    )


@dataclass(frozen=True)
class Plan:
    """One GGUF tensor: where its weights are and how they are stored."""

    name: str
    source: str
    file: Path
    shape: tuple[int, ...]
    qtype: Any  # gguf.GGMLQuantizationType


def read_config(model_dir: str | Path) -> dict:
    """config.json of a model folder or hub id: the architecture and shapes, read before any weights load."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(model_dir)).to_dict()
    except Exception as error:  # OSError, ValueError or hub errors for a bad name
        raise RecipeError(
            f"could not read the config of {model_dir} ({type(error).__name__}): GGUF export needs the base model's config.json"
        ) from None


def architecture(config: dict, model: str) -> str:
    """The llama.cpp architecture of a transformers config; RecipeError for one this exporter does not write."""
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    if names[0] not in ARCHITECTURES:
        raise RecipeError(
            f"model.name={model} is a {names[0]}: GGUF export writes {' and '.join(ARCHITECTURES)} (Qwen2.5, SmolLM2); use --merge and llama.cpp's convert_hf_to_gguf.py"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise RecipeError(
            f"model.name={model} uses {rope.get('rope_type', rope.get('type'))} RoPE scaling, which this exporter does not write: use --merge and llama.cpp's convert_hf_to_gguf.py"
        )
    return ARCHITECTURES[names[0]]


def pre_tokenizer(tokenizer) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization regex (tokenizer.ggml.pre)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str()).get("pre_tokenizer") or {}
    steps = spec.get("pretokenizers", [spec]) if spec.get("type") == "Sequence" else [spec]
    kinds = [step.get("type") for step in steps]
    if kinds == ["Split", "ByteLevel"] and steps[0].get("pattern", {}).get("Regex") == QWEN2_PRETOKENIZE_REGEX:
        return "qwen2"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    raise RecipeError(
        f"the tokenizer's pre-tokenizer ({json.dumps(spec)[:120]}) is not one llama.cpp is known to match here (Qwen2, GPT-2, SmolLM): use --merge and llama.cpp's convert_hf_to_gguf.py"
    )


def check_tokenizer(tokenizer) -> str:
    """The pre-tokenizer name, after checking the tokenizer is byte-level BPE with ChatML's end of turn."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise RecipeError(
            f"the tokenizer is {model.get('type')}, not byte-level BPE: GGUF export writes Qwen2.5- and SmolLM2-style tokenizers only"
        )
    if IM_END not in tokenizer.get_vocab():
        raise RecipeError(
            f"the tokenizer has no {IM_END} token: GGUF export needs the ChatML template the recipe trains with"
        )
    return pre_tokenizer(tokenizer)


def vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int]]:
    """Tokens and their llama.cpp types by id, padded to the model's embedding rows as convert_hf_to_gguf.py does."""
    import gguf

    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[i])
        if i not in added:
            types.append(gguf.TokenType.NORMAL)
        elif added[i].special or (by_id[i].startswith("<|") and by_id[i].endswith("|>")):
            types.append(gguf.TokenType.CONTROL)
        else:
            types.append(gguf.TokenType.USER_DEFINED)
    return tokens, types


def merges(tokenizer) -> list[str]:
    listed = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    return [merge if isinstance(merge, str) else " ".join(merge) for merge in listed]


def add_tokenizer(writer, tokenizer, config: dict, pre: str) -> None:
    """Vocabulary, merges, special tokens and chat template; <|im_end|> ends a turn, as in training."""
    tokens, types = vocabulary(tokenizer, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges(tokenizer))
    end_of_turn = tokenizer.convert_tokens_to_ids(IM_END)
    writer.add_eos_token_id(end_of_turn)
    writer.add_eot_token_id(end_of_turn)
    # No BOS in the tokenizer (Qwen2.5): the config's, else <|endoftext|>, as Qwen's own GGUFs name one;
    # unnamed, llama.cpp would take token 11. add_bos_token below keeps it out of prompts either way.
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config.get("bos_token_id")
    if bos is None and ENDOFTEXT in tokenizer.get_vocab():
        bos = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    if bos is not None:
        writer.add_bos_token_id(bos)
    pad = tokenizer.pad_token_id
    if pad is None and ENDOFTEXT in tokenizer.get_vocab():
        pad = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    if pad is not None:
        writer.add_pad_token_id(pad)
    if tokenizer.unk_token_id is not None:
        writer.add_unk_token_id(tokenizer.unk_token_id)
    # Whatever transformers adds around a text, llama.cpp must add too.
    plain, special = tokenizer.encode("a", add_special_tokens=False), tokenizer.encode("a")
    writer.add_add_bos_token(
        tokenizer.bos_token_id is not None and special[:1] == [tokenizer.bos_token_id] != plain[:1]
    )
    writer.add_add_eos_token(
        tokenizer.eos_token_id is not None and special[-1:] == [tokenizer.eos_token_id] != plain[-1:]
    )
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def rope_theta(config: dict) -> float | None:
    return (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta"))


def add_hyperparameters(writer, config: dict, arch: str, qtype_file: Any) -> None:
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config.get("num_key_value_heads") or config["num_attention_heads"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if (theta := rope_theta(config)) is not None:
        writer.add_rope_freq_base(theta)
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if config.get("head_dim"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch == "llama":
        writer.add_vocab_size(config["vocab_size"])
        writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(qtype_file)
    writer.add_quantization_version(QUANTIZATION_VERSION)


def weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise RecipeError(f"{model_dir} has no .safetensors weights: export a folder written by --merge")
    return files


def tensor_type(name: str, shape: tuple[int, ...], gguf_type: str):
    """As convert_hf_to_gguf.py: norms, biases and other 1-D tensors in f32; a row q8_0 cannot split in f16."""
    import gguf

    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    if gguf_type == "q8_0" and shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def plan_tensors(model_dir: Path, config: dict, arch: str, gguf_type: str) -> list[Plan]:
    """Every tensor's GGUF name, source and storage type, read from the safetensors headers alone."""
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    plans = []
    for file in weight_files(model_dir):
        with safe_open(str(file), framework="pt") as weights:
            for source in weights.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if source == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # llama.cpp reuses token_embd when output.weight is absent
                name = names.get_name(source, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise RecipeError(f"{file}: no GGUF name for tensor {source} of a {arch} model")
                shape = tuple(weights.get_slice(source).get_shape())
                plans.append(Plan(name, source, file, shape, tensor_type(name, shape, gguf_type)))
    return plans


def permute(weights, n_head: int):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF's rotate-half q/k rows into llama.cpp's interleaved pairs."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def read_tensor(plan: Plan):
    """The float32 weights of one planned tensor."""
    import torch
    from safetensors import safe_open

    with safe_open(str(plan.file), framework="pt") as weights:
        return weights.get_tensor(plan.source).to(torch.float32).numpy()


def tensor_data(plan: Plan, config: dict, arch: str):
    """One tensor as the GGUF stores it: q/k permuted where llama.cpp needs it, then cast or quantized."""
    import gguf

    data = read_tensor(plan)
    if arch in PERMUTED_ARCHS:
        heads = config["num_attention_heads"]
        if plan.source.endswith(("q_proj.weight", "q_proj.bias")):
            data = permute(data, heads)
        elif plan.source.endswith(("k_proj.weight", "k_proj.bias")):
            data = permute(data, config.get("num_key_value_heads") or heads)
    return gguf.quants.quantize(data, plan.qtype)


def file_type(gguf_type: str):
    import gguf

    return {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]


def write_gguf(model_dir: str | Path, tokenizer, out: str | Path, gguf_type: str, name: str) -> dict:
    """model_dir's weights, tokenizer and chat template as one GGUF file at ``out``; returns what was written.

    Tensors are streamed one at a time from the safetensors files, so memory stays at one tensor.
    """
    import gguf
    import numpy as np

    model_dir, out = Path(model_dir), Path(out)
    config = read_config(model_dir)
    arch = architecture(config, str(model_dir))
    pre = check_tokenizer(tokenizer)
    plans = plan_tensors(model_dir, config, arch, gguf_type)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(name)
    add_hyperparameters(writer, config, arch, file_type(gguf_type))
    add_tokenizer(writer, tokenizer, config, pre)
    for plan in plans:
        stored = gguf.quant_shape_to_byte_shape(plan.shape, plan.qtype)
        writer.add_tensor_info(plan.name, stored, np.dtype(np.uint8), int(np.prod(stored)), raw_dtype=plan.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for plan in plans:
        writer.write_tensor_data(tensor_data(plan, config, arch))
    writer.close()
    return {"architecture": arch, "pre_tokenizer": pre, "tensors": len(plans), "bytes": out.stat().st_size}
