"""Speed and memory of train_grpo.py, setting by setting, on one GPU, offline.

    python bench/bench.py                          # every setting, 20 steps each (2 to 7.5 min a setting on an H100)
    python bench/bench.py --settings notebook,default --steps 12
    python bench/bench.py --smoke                  # the harness itself, on a CPU, with the tiny model

It builds a random-weight model with Qwen2.5-3B's exact architecture and a tokenizer with its
vocabulary size (the hub is unreachable; random weights also make every completion run to the
length cap, so settings are comparable) and keeps the problems whose prompts have one token length
(see most_common_length), then runs train_grpo.main() for each setting in its own
process, capped to the memory of a 24 GB RTX 4090. It writes bench/results/latest.json and a
markdown table for README.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import train_grpo  # noqa: E402
from recipe import backend as backends  # noqa: E402
from recipe import tiny  # noqa: E402
from recipe.config import load_config  # noqa: E402
from recipe.data import chat_prompt, prompt_tokens  # noqa: E402
from recipe.jsonl import read_jsonl, write_jsonl  # noqa: E402
from recipe.synthetic import make_problems, tagged_reply  # noqa: E402

WORK = ROOT / "bench" / ".work"
RESULTS = ROOT / "bench" / "results"
CARD_GIB = 23.99  # an RTX 4090 (24,564 MiB); what the recipe must fit in

QWEN25_3B = dict(
    vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True, use_sliding_window=False,
)

# Each setting: what it is, the config it starts from, and train_grpo --set overrides on top.
NOTEBOOK_YAML = ROOT / "configs" / "notebook-4090.yaml"
DEFAULT_YAML = ROOT / "config.yaml"
SETTINGS = {
    "notebook": ("the notebook recipe: 4-bit, compiled, 1 prompt x 6, generate every step", NOTEBOOK_YAML, []),
    "default": ("config.yaml as shipped", DEFAULT_YAML, []),
    "nocompile": ("notebook without torch.compile", NOTEBOOK_YAML, ["model.compile=false"]),
    "16bit": ("notebook, 16-bit, no compile", NOTEBOOK_YAML, ["model.compile=false", "model.load_in_4bit=false"]),
    "4bit-spg4": ("notebook, no compile, generate for 4 steps at once", NOTEBOOK_YAML, ["model.compile=false", "training.steps_per_generation=4"]),
    "default-beta0": ("config.yaml without the KL term (no reference pass; TRL 1.x's default)", DEFAULT_YAML, ["training.beta=0.0"]),
    "16bit-spg8": ("notebook, 16-bit, no compile, generate for 8 steps at once", NOTEBOOK_YAML, ["model.compile=false", "model.load_in_4bit=false", "training.steps_per_generation=8"]),
}


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


def build_model(out: Path, data: Path) -> None:
    """A random bf16 Qwen2.5-3B-shaped model folder, built on the GPU in under a minute, and its prompts."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    rows = make_problems(2000, seed=0)
    texts = [tiny.render_chat(chat_prompt(r["question"])) + tagged_reply(r) for r in rows]
    build_tokenizer(out, texts, QWEN25_3B["vocab_size"])
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    kept = most_common_length(rows, [prompt_tokens(tokenizer, chat_prompt(r["question"])) for r in rows])
    write_jsonl(kept, data)
    config = Qwen2Config(**QWEN25_3B, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
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


def gpu_name() -> str:
    """From NVML, so that this process never opens a CUDA context of its own on the measured GPU."""
    import pynvml

    pynvml.nvmlInit()
    name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
    return name.decode() if isinstance(name, bytes) else name


class PeakMemory:
    """Peak GPU memory in use (NVML, the whole device), sampled from a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self):
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, pynvml.nvmlDeviceGetMemoryInfo(handle).used)
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_capped(cap_gib: float | None, profile: Path, train_args: list[str]) -> int:
    """Run train_grpo.main() on ``cap_gib`` of GPU memory and record TRL's profiling timers to ``profile``.

    The rest of the card is taken by one idle allocation first. A per-process memory fraction would
    not do: it caps only PyTorch's allocator, and vLLM's KV cache is allocated outside it. Unsloth
    sizes vLLM as model.gpu_memory_utilization of the memory free at load time, so the config's
    fraction then means what it means on a 4090.
    """
    import torch

    blocker = None
    if cap_gib and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        if total - free > 2**30:  # more than this process's own CUDA context
            print(f"bench: warning: {(total - free) / 2**30:.1f} GiB of the GPU were already in use; figures will be off", flush=True)
        blocker = torch.empty(int(total - cap_gib * 2**30), dtype=torch.uint8, device="cuda")
        print(f"bench: holding {blocker.numel() / 2**30:.1f} GiB so {cap_gib} GiB of {total / 2**30:.1f} are left", flush=True)
    options = train_grpo.parse_args(train_args)
    cfg = load_config(options.config, options.overrides)
    if backends.resolve_backend(cfg) == "unsloth":
        backends.import_unsloth(cfg.model)  # before trl, as main() would
    from trl.extras import profiling

    def record(self, duration: float) -> None:
        with open(profile, "a") as f:
            f.write(json.dumps({"name": self.name.split(".")[-1], "step": self.step, "seconds": duration}) + "\n")

    profiling.ProfilingContext._log_metrics = record
    code = train_grpo.main(train_args)
    del blocker
    return code


def steady_state(rows: list[dict], steps_per_generation: int, warmup: int) -> float:
    """Median seconds per step over whole generation cycles after the warm-up steps."""
    times = {row["step"]: row["time"] for row in rows if "step_time" in row}
    starts = [s for s in sorted(times) if s >= warmup and (s - warmup) % steps_per_generation == 0]
    cycles = [(times[b] - times[a]) / steps_per_generation for a, b in zip(starts, starts[1:])]
    return statistics.median(cycles) if cycles else float("nan")


def run_setting(name: str, description: str, config: Path, overrides: list[str], args: argparse.Namespace, model: Path, data: Path) -> dict:
    out = WORK / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sets = [f"model.name={model}", f"data.dataset={data}", f"output.dir={out}", f"training.max_steps={args.steps}",
            "output.save_steps=100000", "output.sample_every=100000", *overrides]
    if args.smoke:  # the tiny model on a CPU: no 4-bit, no vLLM, shorter completions
        sets += ["model.load_in_4bit=false", "model.fast_inference=false", "training.max_completion_length=64"]
    config = ROOT / "configs" / "tiny-cpu.yaml" if args.smoke else config
    cfg = load_config(str(config), sets)
    gpu = not args.smoke
    train_args = ["--config", str(config)] + [arg for item in sets for arg in ("--set", item)]
    profile = out / "profile.jsonl"
    command = [sys.executable, str(Path(__file__).resolve()), "--capped-run", "--profile", str(profile)]
    if gpu:
        command += ["--cap-gib", str(CARD_GIB)]
    command += ["--", *train_args]
    print(f"\n=== {name}: {config.relative_to(ROOT)} {' '.join(overrides)}", flush=True)
    started = time.time()
    with open(out / "stdout.log", "w") as log, PeakMemory() if gpu else contextlib.nullcontext() as memory:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    peak_gib = memory.peak / 2**30 if gpu else None
    text = (out / "stdout.log").read_text()
    result = {"name": name, "description": description, "config": str(config.relative_to(ROOT)), "options": overrides, "exit_code": code, "wall_s": round(time.time() - started, 1)}
    if code != 0:
        result["error"] = text[-3000:]
        result["fits_24gb"] = False if "out of memory" in text.lower() else None
        print(f"{name} failed with exit code {code}; log in {out / 'stdout.log'}", flush=True)
        return result
    result.update(measure(text, out, cfg, args))
    if peak_gib is not None:
        peak_gib -= blocked_gib(text)
    result["peak_gpu_gib"] = None if peak_gib is None else round(peak_gib, 2)
    result["fits_24gb"] = None if peak_gib is None else peak_gib <= CARD_GIB
    print(json.dumps(result), flush=True)
    return result


def blocked_gib(text: str) -> float:
    match = re.search(r"bench: holding ([\d.]+) GiB", text)
    return float(match.group(1)) if match else 0.0


def measure(text: str, out: Path, cfg, args: argparse.Namespace) -> dict:
    rows = read_jsonl(out / "metrics.jsonl")
    steps = [row for row in rows if "step_time" in row]
    loaded = re.search(r"loaded in (\d+)s: ([\d,]+) trainable", text)
    s_per_step = steady_state(rows, cfg.training.steps_per_generation, warmup=args.warmup)
    completions = cfg.training.prompts_per_step * cfg.training.num_generations
    tail = steps[args.warmup:]
    lengths = [row["completions/mean_length"] for row in tail if "completions/mean_length" in row]
    mean_len = statistics.mean(lengths) if lengths else float("nan")
    profile = read_jsonl(out / "profile.jsonl")
    window = [p for p in profile if p["step"] is not None and p["step"] >= args.warmup]
    spent: dict[str, float] = {}
    for p in window:
        spent[p["name"]] = spent.get(p["name"], 0.0) + p["seconds"]
    n_window = max(1, len(tail))
    return {
        "load_s": int(loaded.group(1)) if loaded else None,
        "trainable_params": int(loaded.group(2).replace(",", "")) if loaded else None,
        "first_step_s": round(steps[0]["step_time"], 1) if steps else None,
        "s_per_step": round(s_per_step, 3),
        "completions_per_step": completions,
        "mean_completion_tokens": round(mean_len, 1),
        "tokens_per_s": round(mean_len * completions / s_per_step, 1),
        "prompts_per_s": round(cfg.training.prompts_per_step / s_per_step, 3),
        "profile_s_per_step": {k: round(v / n_window, 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
    }


def table(results: list[dict], device: str, prompt_tokens: int | None = None) -> str:
    lines = [
        f"Device: {device}. " + ("The tiny model, uncapped." if device.startswith("CPU") else
        f"Random-weight Qwen2.5-3B shape, every prompt {prompt_tokens} tokens and every completion "
        f"{results[0].get('mean_completion_tokens', '?')}; memory capped to a 24 GB card."),
        "",
        "| setting | what | load s | first step s | s/step | tokens/s | prompts/s | peak GiB | fits 24 GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("exit_code"):
            lines.append(f"| {r['name']} | {r['description']} | failed (exit {r['exit_code']}) | | | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {r['description']} | {r['load_s']} | {r['first_step_s']} | "
            f"{r['s_per_step']} | {r['tokens_per_s']} | {r['prompts_per_s']} | {r['peak_gpu_gib']} | {r['fits_24gb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {', '.join(SETTINGS)}")
    parser.add_argument("--steps", type=int, default=20, help="steps per setting")
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the steady-state figures")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--smoke", action="store_true", help="check the harness on a CPU with the tiny model")
    parser.add_argument("--capped-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cap-gib", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build", nargs=2, type=Path, metavar=("MODEL", "DATA"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.build:
        build_model(*args.build)
        return 0
    if args.capped_run:
        return run_capped(args.cap_gib, args.profile, rest[1:] if rest[:1] == ["--"] else rest)

    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}: choose from {', '.join(SETTINGS)}")
    if args.smoke:
        subprocess.check_call([sys.executable, str(ROOT / "offline.py"), "tiny", "--out", str(WORK / "tiny")])
        model, data = WORK / "tiny" / "model", WORK / "tiny" / "data" / "train.jsonl"
        device = "CPU (harness smoke test; not a benchmark)"
    else:
        model, data = WORK / "qwen2.5-3b-random", WORK / "prompts-one-length.jsonl"
        if not ((model / "config.json").exists() and data.exists()):
            # In its own process: memory this one held would be missing from every setting's 24 GB.
            started = time.time()
            subprocess.check_call([sys.executable, str(Path(__file__).resolve()), "--build", str(model), str(data)])
            print(f"built {model} in {time.time() - started:.0f}s", flush=True)
        device = gpu_name()
    tokens = bench_prompt_tokens(model, data)
    results = [run_setting(name, *SETTINGS[name], args, model, data) for name in names]
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    if (previous.get("device"), previous.get("steps_per_setting"), previous.get("prompt_tokens")) == (device, args.steps, tokens):
        # Settings measured by an earlier invocation on the same device stay, so a long sweep can be split.
        results += [r for r in previous.get("settings", []) if r["name"] not in names]
        results.sort(key=lambda r: list(SETTINGS).index(r["name"]))
    by_name = {r["name"]: r for r in results if not r.get("exit_code")}
    summary = {
        "device": device,
        "date": time.strftime("%Y-%m-%d"),
        "steps_per_setting": args.steps,
        "warmup_steps": args.warmup,
        "prompt_tokens": tokens,
        "memory_cap_gib": None if args.smoke else CARD_GIB,
        "settings": results,
        "notebook_s_per_step": by_name.get("notebook", {}).get("s_per_step"),
        "default_s_per_step": by_name.get("default", {}).get("s_per_step"),
    }
    if summary["notebook_s_per_step"] and summary["default_s_per_step"]:
        notebook, default = by_name["notebook"], by_name["default"]
        summary["speedup_default_vs_notebook"] = round(notebook["s_per_step"] / default["s_per_step"], 2)
        summary["prompts_per_s_default_vs_notebook"] = round(default["prompts_per_s"] / notebook["prompts_per_s"], 2)
    for key in ("learning",):  # written by the learning run; a speed rerun keeps it
        if key in previous:
            summary[key] = previous[key]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(results, device, tokens))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}\n{table(results, device, tokens)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
