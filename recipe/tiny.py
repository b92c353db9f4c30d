"""A tiny Qwen2 model and a Qwen2-style tokenizer, built and briefly pre-trained on a CPU.

* a byte-level BPE tokenizer that loads as ``Qwen2Tokenizer`` with a ChatML template,
* a ``Qwen2ForCausalLM`` of about 140k parameters, pre-trained for about 15 s on one CPU thread
  so that it often, not always, answers in the recipe's tag format: GRPO needs reward variance
  to learn from. Its arithmetic is wrong nearly every time.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rewards
from recipe.data import chat_prompt
from recipe.synthetic import tagged_reply

if TYPE_CHECKING:
    import tokenizers
    from transformers import PreTrainedTokenizerBase

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]

# Same regex transformers 5.x hard-codes into Qwen2Tokenizer; training with anything else
# would make the saved tokenizer disagree with the one AutoTokenizer rebuilds on load.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's ChatML template minus tool calling and the implicit default system turn:
# the recipe always sends its own system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


# Conversations per pre-training step, drawn without replacement: the fewest problems a build can pre-train on.
BATCH = 16

# Share of pre-training replies written as plain GSM8K text instead of tags, so the tiny
# model keeps producing some untagged answers and format rewards are not saturated.
PLAIN_REPLY_FRACTION = 0.3


def render_chat(messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Python twin of CHAT_TEMPLATE, needed before a tokenizer exists to render it."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + f"{IM_START}assistant\n" if add_generation_prompt else text


def conversations(rows: list[dict], seed: int) -> list[tuple[str, str]]:
    """(prompt text, reply text ending in <|im_end|>); a fixed share of replies is plain GSM8K text."""
    rng = random.Random(seed)
    pairs = []
    for row in rows:
        prompt = render_chat(chat_prompt(row["question"]), add_generation_prompt=True)
        reply = row["answer"] if rng.random() < PLAIN_REPLY_FRACTION else tagged_reply(row)
        pairs.append((prompt, reply + IM_END))
    return pairs


def train_bpe(texts: Iterable[str], vocab_size: int = 1536) -> tokenizers.Tokenizer:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        # Every byte in the base vocab, so any text (unseen names, unicode) stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_as_qwen2(raw: tokenizers.Tokenizer, out_dir: str | Path) -> PreTrainedTokenizerBase:
    """Wrap the trained BPE as Qwen2Tokenizer and save it; returns the wrapper."""
    from transformers import Qwen2Tokenizer

    model = json.loads(raw.to_str())["model"]
    # Qwen2Tokenizer rebuilds normalizer/pre-tokenizer/decoder from code, so only
    # vocab and merges carry over; the special tokens already sit at ids 0..2.
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]],
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
    )
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def tokenizer_mismatches(raw: tokenizers.Tokenizer, hf: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[str]:
    """Texts on which the HF tokenizer disagrees with the raw one or fails to round-trip."""
    bad = []
    for text in texts:
        ids = raw.encode(text).ids
        if hf.encode(text, add_special_tokens=False) != ids or hf.decode(ids) != text:
            bad.append(text)
    return bad


def probe_texts() -> list[str]:
    return [
        rewards.SYSTEM_PROMPT,
        "A car costs $1,234. Tom pays $1,000 up front.\n\n#### 234",
        "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>\n",
        f"{IM_START}user\nHow many?{IM_END}\n{IM_START}assistant\n",
        "  leading spaces, tabs\tand unicode: café ½ — ✓ 日本\r\n",
    ]


def build_tokenizer(texts: list[str], out_dir: str | Path) -> tokenizers.Tokenizer:
    """Train, save as Qwen2Tokenizer, and fail loudly if AutoTokenizer would encode differently."""
    from transformers import AutoTokenizer

    raw = train_bpe(texts)
    save_as_qwen2(raw, out_dir)
    loaded = AutoTokenizer.from_pretrained(str(out_dir))
    bad = tokenizer_mismatches(raw, loaded, probe_texts() + texts[:20])
    if bad:
        raise RuntimeError(f"AutoTokenizer disagrees with the trained tokenizer on {bad[:3]!r}")
    return raw


def tiny_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import Qwen2Config

    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        # No BOS id: the tokenizer has no BOS token (like Qwen2.5), and a mismatch makes
        # TRL's trainer warn and rewrite the config on every load.
        eos_token_id=pad_id,
        pad_token_id=pad_id,
    )


def tiny_generation_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    from transformers import GenerationConfig

    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    # Like Qwen2.5-Instruct: stop on <|im_end|> (end of turn) as well as <|endoftext|>.
    return GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END), pad_id],
        pad_token_id=pad_id,
    )


def encode_pairs(tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """Prompt and reply tokenised separately, as GRPO sees them (prompt ids + completion ids)."""
    return [
        (tokenizer.encode(prompt, add_special_tokens=False), tokenizer.encode(reply, add_special_tokens=False))
        for prompt, reply in pairs
    ]


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(p) + len(r) for p, r in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (prompt, reply) in enumerate(examples):
        ids = prompt + reply
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        # Loss on the reply only: the prompt is fixed by the dataset, not something to learn.
        labels[i, len(prompt) : len(ids)] = torch.tensor(reply)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with n torch CPU threads, then restore the previous count.

    Matmuls as small as the tiny model's gain little from a second thread, and when another
    process holds a core, OpenMP threads spin-wait on each other: on a 2-core box the 25 s
    build was seen taking 230 s with 2 threads, while 1 thread ran at full speed.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pretrain(
    model: Any, examples: list[tuple[list[int], list[int]]], pad_id: int, steps: int, seed: int, lr: float = 6e-3
) -> list[float]:
    """A few hundred AdamW steps on one thread; returns the loss curve."""
    import torch

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20) * (1 - step / steps))
    model.train()
    losses = []
    with torch_threads(1):
        for _ in range(steps):
            batch = {k: v.to(model.device) for k, v in collate(rng.sample(examples, BATCH), pad_id).items()}
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    model.eval()
    return losses


def build_tiny_model(out_dir: str | Path, rows: list[dict], seed: int = 0, steps: int = 200) -> dict[str, Any]:
    """Tokenizer + pre-trained tiny Qwen2ForCausalLM saved to out_dir; returns build stats."""
    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    start = time.perf_counter()
    out_dir = Path(out_dir)
    pairs = conversations(rows, seed)
    build_tokenizer([prompt + reply for prompt, reply in pairs], out_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_config(tokenizer))
    model.generation_config = tiny_generation_config(tokenizer)
    losses = pretrain(model, encode_pairs(tokenizer, pairs), tokenizer.pad_token_id, steps, seed)
    model.save_pretrained(str(out_dir))
    return {
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "first_loss": losses[0],
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
    }
