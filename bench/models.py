"""The random-weight Qwen2.5 models the bench trains, and which of them fits which card.

The hub is unreachable, so a model of a size's published shape is built with random weights and a
tokenizer of its vocabulary size, with problems whose prompts share one token length. The tables README
shows (fit rows measured by bench.py --fit, the memory forecast, and the two merged) are rebuilt from
bench/results/ and recipe/memory.py alone, with no GPU.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from recipe import memory, tiny  # noqa: E402
from recipe.config import load_config  # noqa: E402
from recipe.data import chat_prompt, prompt_tokens  # noqa: E402
from recipe.jsonl import read_jsonl, write_jsonl  # noqa: E402
from recipe.synthetic import make_problems, tagged_reply  # noqa: E402

CARD_GIB = 23.99  # an RTX 4090 (24,564 MiB); what the recipe must fit in
DEFAULT_YAML = ROOT / "config.yaml"
SIZES = [hub_id.removeprefix("Qwen/Qwen2.5-") for hub_id in memory.QWEN25_SHAPES]  # 0.5B ... 32B


def shape_of(size: str) -> dict:
    return memory.QWEN25_SHAPES[f"Qwen/Qwen2.5-{size}"]


def build_tokenizer(out: Path, texts: list[str], vocab_size: int) -> None:
    """The project's Qwen2-style BPE, padded with filler tokens to the model's vocabulary size.

    Random weights sample every id, so each one must decode to something.
    """
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    raw = tiny.train_bpe(texts)
    spec = json.loads(raw.to_str())
    vocab = spec["model"]["vocab"]
    for i in range(vocab_size - 1 - len(vocab)):
        vocab[f"fill{i}"] = len(vocab)
    tiny.save_as_qwen2(Tokenizer.from_str(json.dumps(spec)), out)
    # Like Qwen2.5, keep a pad token apart from EOS: Unsloth refuses a tokenizer whose pad is its EOS.
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    tokenizer.add_special_tokens({"pad_token": "<|fim_pad|>"})
    assert len(tokenizer) == vocab_size, len(tokenizer)
    tokenizer.save_pretrained(str(out))


def most_common_length(rows: list[dict], lengths: list[int]) -> list[dict]:
    """The rows whose prompt has the most common token length (the shortest such length on a tie).

    Unsloth checks its packed log-prob forward against a per-row forward whenever a batch holds more
    tokens, or a longer row, than any before it: 24 extra forward passes (about 3 s) in the default's
    generation step. Shuffled data sets such a record about ln(n) times in n generation steps, about 20
    times in 22,419 steps; 20 steps over prompts of varied length set one on most generation steps and
    would measure the check instead of the steady state.
    """
    counts = Counter(lengths)
    length = max(sorted(counts), key=counts.__getitem__)
    return [row for row, n in zip(rows, lengths) if n == length]


def build_model(out: Path, data: Path, size: str) -> None:
    """A random bf16 Qwen2.5 model folder of ``size``'s published shape, and prompts of one length.

    Built on the GPU in under a minute for the 3B (about 70 s for the 14B).
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    shape = shape_of(size)
    rows = make_problems(2000, seed=0)
    texts = [tiny.render_chat(chat_prompt(r["question"])) + tagged_reply(r) for r in rows]
    build_tokenizer(out, texts, shape["vocab_size"])
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    kept = most_common_length(rows, [prompt_tokens(tokenizer, chat_prompt(r["question"])) for r in rows])
    write_jsonl(kept, data)
    config = Qwen2Config(
        **shape,
        use_sliding_window=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(out))


def bench_prompt_tokens(model: Path, data: Path) -> int | None:
    """The one prompt length of the bench's problems; None for data of several lengths (the smoke run)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    lengths = {prompt_tokens(tokenizer, chat_prompt(row["question"])) for row in read_jsonl(data)}
    return lengths.pop() if len(lengths) == 1 else None


def predicted_peak(
    config: Path, overrides: list[str], size: str, cap_gib: float, prompt_tokens: int | None
) -> float | None:
    """recipe.memory's forecast for this row, made before it ran, from the shape alone."""
    cfg = load_config(str(config), overrides)
    return memory.forecast(cfg, shape_of(size), cap_gib, prompt_tokens=prompt_tokens, advise=False).peak_gib


# Rows measured before recipe/graphed_step.py's first run trained through TRL's and Unsloth's own step, which
# training.cuda_graphs=false asks for today; their options could not say so.
FIRST_GRAPHED_RUN = "2026-12-07"


def options_as_run(row: dict) -> list[str]:
    """A measured row's config options, with the training step it ran when the row predates the switch."""
    options = list(row["options"])
    if row.get("date", FIRST_GRAPHED_RUN) < FIRST_GRAPHED_RUN and not any("cuda_graphs" in o for o in options):
        options.append("training.cuda_graphs=false")
    return options


def forecast_error(predicted: float | None, measured: float | None) -> float | None:
    """(forecast - measured) / measured; the forecast must stay within 15% of every measured peak."""
    return None if predicted is None or not measured else round((predicted - measured) / measured, 3)


def fit_config(size: str, bits: int, cap_gib: float = CARD_GIB) -> tuple[Path, list[str]]:
    """The shipped config for ``size`` on a card of ``cap_gib`` if there is one (with its own bit width):
    a 12 GB one below 20 GiB, else the 24 GB one; else config.yaml."""
    names = ([f"qwen2.5-{size.lower()}-12gb.yaml"] if cap_gib < 20 else []) + [f"qwen2.5-{size.lower()}-4090.yaml"]
    base = next((ROOT / "configs" / n for n in names if (ROOT / "configs" / n).exists()), DEFAULT_YAML)
    return base, [f"model.load_in_4bit={'true' if bits == 4 else 'false'}"]


def fit_table(rows: list[dict]) -> str:
    """fit.json as README's table: one line per model and bit width, one column per card size."""
    caps = sorted({r["cap_gib"] for r in rows})
    lines = [
        "| model | bits | " + " | ".join(f"{cap:g} GiB card" for cap in caps) + " | config |",
        "|---|---|" + "---|" * (len(caps) + 1),
    ]
    for model, bits in dict.fromkeys((r["model"], r["bits"]) for r in rows):
        cells = []
        for cap in caps:
            r = next((r for r in rows if (r["model"], r["bits"], r["cap_gib"]) == (model, bits, cap)), None)
            if r is None:
                cells.append("not run")
            elif r["fits"]:
                cells.append(f"fits: {r['s_per_step']} s/step, peak {r['peak_gpu_gib']} GiB")
            else:
                cells.append(f"does not fit (peak {r['peak_gpu_gib']} GiB, exit {r['exit_code']})")
        configs = dict.fromkeys(r["config"] for r in rows if (r["model"], r["bits"]) == (model, bits))
        lines.append(f"| {model} | {bits} | " + " | ".join(cells) + " | " + ", ".join(f"`{c}`" for c in configs) + " |")
    return "\n".join(lines) + "\n"


CARDS = {12.0: "12 GB", 16.0: "16 GB", CARD_GIB: "24 GB"}


def card_table(fit_rows: list[dict], sweep_rows: list[dict]) -> str:
    """README's one table of which model trains on which card: a cell is measured where fit.json (or the
    sweep's `default` row, for the 3B on 24 GB) has it, else recipe.memory's forecast at 256-token prompts."""
    measured = {(r["model"], r["bits"], r["cap_gib"]): r for r in fit_rows}
    default = next((r for r in sweep_rows if r.get("name") == "default" and r.get("exit_code") == 0), None)
    if default is not None:
        measured.setdefault(("Qwen2.5-3B", 16, CARD_GIB), {**default, "fits": default.get("fits")})
    lines = ["| model | bits | " + " | ".join(CARDS.values()) + " | configs |", "|---|---|" + "---|" * (len(CARDS) + 1)]
    for size in SIZES:
        for bits in (16, 4):
            cells, configs = [], {}
            for cap, card in CARDS.items():
                config, overrides = fit_config(size, bits, cap)
                configs.setdefault(f"`{config.relative_to(ROOT)}`", []).append(card.removesuffix(" GB"))
                row = measured.get((f"Qwen2.5-{size}", bits, cap))
                if row is not None and row.get("fits"):
                    cells.append(f"yes: {row['peak_gpu_gib']:.1f} GiB, {row['s_per_step']:.2f} s/step (measured)")
                elif row is not None:
                    cells.append("no (measured)")
                else:
                    result = memory.forecast(load_config(str(config), overrides), shape_of(size), cap)
                    cells.append(f"yes: {result.peak_gib:.1f} GiB (forecast)" if result.fits else "no (forecast)")
            # Each cell ran (or is forecast) with the config named for its card.
            named = list(configs) if len(configs) == 1 else [f"{c} ({', '.join(g)} GB)" for c, g in configs.items()]
            lines.append(f"| Qwen2.5-{size} | {bits} | " + " | ".join(cells) + f" | {', '.join(named)} |")
    return "\n".join(lines) + "\n"


def write_card_table(results: Path) -> Path:
    """cards.md in ``results`` from its fit.json, latest.json and the forecast: README shows it as written."""
    fit_rows = json.loads((results / "fit.json").read_text())["rows"] if (results / "fit.json").exists() else []
    latest = results / "latest.json"
    sweep_rows = json.loads(latest.read_text()).get("settings", []) if latest.exists() else []
    out = results / "cards.md"
    out.write_text(card_table(fit_rows, sweep_rows))
    return out
