"""The training phase alone, to price the levers its profile points at.

    python bench/train_step.py            # on a CUDA GPU: bench/results/train-step.{json,md}
    python bench/train_step.py --smoke    # the harness on a CPU with the tiny model (writes bench/.work/)

The default's training phase runs at 9.5x its floor (bench/results/latest.json), and its profile
(profile-allfast.md) shows why: 6,404 kernel launches a step for 0.072 s of kernels, the GPU 17% busy,
a third of the launches copies. This runs
only that phase: the recipe's LoRA model (config.yaml on the bench's random-weight Qwen2.5-3B, Unsloth
without vLLM) takes one forward and backward of a step's batch (prompts_per_step x num_generations
rows of the bench's prompt length + max_completion_length tokens, packed into one stream as Unsloth's
GRPO loss packs them), in one process, with the variants taken in turns so that the host's drift
falls on all of them alike:

    fp32-lora  as training runs: Unsloth keeps the LoRA weights in fp32 and casts them to bf16 for every product
    bf16-lora  the LoRA weights stored in bf16, so no casts: what fp32 master copies held by the optimizer
               would leave in the model
    graph      fp32-lora captured once as a CUDA graph and replayed: the step without the host launching
               each kernel, timed in turns with fp32-lora once more (or the capture's error)

The loss is the mean square of the last hidden states: the decoder layers hold the launches; the
log-prob head and GRPO's loss, a few dozen more, are left out. Each variant also runs once under
torch.profiler: bench/phase_profile.py's counts for one step, its whole profile as train-step-NAME.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from phase_profile import PhaseProfiler  # noqa: E402

from recipe import backend as backends  # noqa: E402
from recipe.config import load_config  # noqa: E402

WORK = ROOT / "bench" / ".work"
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))


def lora_weights(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def step_batch(cfg, prompt_tokens: int, vocab: int, device: str) -> tuple:
    """One optimizer step's rows of random token ids, all of the bench's one length, and their mask."""
    import torch

    rows = cfg.training.prompts_per_step * cfg.training.num_generations
    length = prompt_tokens + cfg.training.max_completion_length
    generator = torch.Generator().manual_seed(cfg.training.seed)
    ids = torch.randint(vocab, (rows, length), generator=generator).to(device)
    return ids, torch.ones_like(ids)


def packed(ids) -> dict:
    """The rows as Unsloth's GRPO loss feeds them (unsloth_zoo rl_replacements.py, sequence packing): one
    [1, rows x length] stream, positions restarting per row, each row's length. Built once and reused:
    Unsloth caches its packed-attention layout by these tensors' identity, so later calls skip its host reads."""
    import torch

    rows, length = ids.shape
    return {
        "input_ids": ids.reshape(1, rows * length),
        "position_ids": torch.arange(length, device=ids.device).repeat(rows).unsqueeze(0),
        "packed_seq_lengths": torch.full((rows,), length, dtype=torch.int32, device=ids.device),
        "use_cache": False,
    }


def make_step(model, ids, mask, unsloth: bool):
    """Zero the gradients, then one forward and backward; returns the loss (not read back: no sync)."""

    import torch

    # bf16 autocast as the Trainer runs the loss; without its weight cache, which a CUDA graph cannot hold.
    autocast = torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=ids.is_cuda, cache_enabled=False)
    inputs = packed(ids) if unsloth else None

    def step():
        model.zero_grad(set_to_none=True)
        with autocast:
            if unsloth:  # the final hidden states come back as .logits under UNSLOTH_RETURN_HIDDEN_STATES
                hidden = model(**inputs).logits
            else:
                hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
            loss = hidden.float().square().mean()
        loss.backward()
        return loss

    return step


class Dtypes:
    """The LoRA weights' storage, swapped between variants without copying: fp32 as trained, or a bf16 copy."""

    def __init__(self, weights: list):
        import torch

        self.weights = weights
        self.loaded = str(weights[0].dtype).removeprefix("torch.") if weights else None
        self.fp32 = [w.data.float() for w in weights]  # the loaded storage itself when it is fp32
        self.bf16 = [d.to(torch.bfloat16) for d in self.fp32]

    def use(self, variant: str) -> None:
        for weight, data in zip(self.weights, self.bf16 if variant == "bf16-lora" else self.fp32):
            weight.data = data


def why(error: BaseException) -> str:
    """A failure's first line. A capture that fails inside ``torch.cuda.graph`` raises again on leaving it
    ("operation failed due to a previous error during capture"), and the first error becomes the context."""
    cause = error.__context__ or error
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]


def capture(step, cuda: bool):
    """``step`` as a CUDA graph (warmed up on a side stream, as torch's whole-network example does),
    or why it could not be captured."""
    import torch

    if not cuda:
        return None, "needs a CUDA GPU"
    graph = torch.cuda.CUDAGraph()
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.cuda.graph(graph):
            step()
    except Exception as error:  # whatever stops the capture is the finding, recorded in the table
        return None, why(error)
    return graph, None


def timed(run, sync) -> float:
    sync()
    started = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - started


def measure(runs: dict, rounds: int, sync, setup=lambda name: None, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each runner, the runners taken in turns for ``rounds`` rounds after ``warmup``;
    ``setup(name)`` runs before each call, untimed."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round in range(warmup + rounds):
        for name, run in runs.items():
            setup(name)
            took = timed(run, sync)
            if round >= warmup:
                times[name].append(took)
    return times


def profiled(run, sync, folder: Path, name: str) -> dict:
    """One call of ``run`` under torch.profiler, waited for inside its range (a graph's replay returns at
    once): bench/phase_profile.py's train-phase counts, its whole profile kept as train-step-NAME.json."""
    profiler = PhaseProfiler(folder / f"train-step-{name}.json", first_step=0, steps=1)
    profiler.start()
    profiler.enter("step")
    run()
    sync()
    profiler.exit("step")
    return profiler.stop()["phases"].get("train", {})


def row(name: str, times: list[float], profile: dict, note: str | None = None) -> dict:
    return {
        "variant": name,
        "s_median": round(statistics.median(times), 4) if times else None,
        "s_min": round(min(times), 4) if times else None,
        "rounds": len(times),
        "kernel_s": profile.get("kernel_s_per_step"),
        "launches": profile.get("launches_per_step"),
        "syncs": profile.get("syncs_per_step"),
        "graph_launches": profile.get("graph_launches_per_step"),
        "gpu_busy_profiled": profile.get("gpu_busy"),
        "launched_by": profile.get("launched_by", []),
        **({"note": note} if note else {}),
    }


def markdown(summary: dict) -> str:
    lines = [
        f"The training phase alone (`bench/train_step.py`, {summary['date']}, {summary['device']}): "
        f"{summary['rows']} rows x {summary['tokens']} tokens ({summary['forward']}), one forward and backward of the "
        f"recipe's LoRA model ({summary['model']}, LoRA weights loaded as {summary['lora_dtype_as_loaded']}), "
        f"{summary['rounds']} rounds with the variants in turns; kernels, launches and host syncs from one profiled call.",
        "",
        "| variant | s a step (median) | min | kernel s | launches | host syncs | launched most by |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary["variants"]:
        top = "; ".join(f"`{x['op']}` {x['share']:.0%}" for x in r["launched_by"][:2])
        cells = [
            r["variant"],
            r["s_median"],
            r["s_min"],
            r["kernel_s"],
            r["launches"],
            r["syncs"],
            r.get("note") or top,
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    if "fp32_lora_beside_graph_s_median" in summary:
        lines += [
            "",
            f"fp32-lora in turns with the graph's rounds: {summary['fp32_lora_beside_graph_s_median']} s a step.",
        ]
    return "\n".join(lines) + "\n"


def write(summary: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary))


def load(args: argparse.Namespace):
    """The recipe's model on the bench's 3B (Unsloth, its LoRA as config.yaml sets it), or the tiny one on a CPU."""
    import bench

    if args.smoke:
        model_dir, data, backend = *bench.tiny_model(), "trl"
    else:
        model_dir, data = bench.ensure_model("3B")  # built in a process of its own
        backend = "unsloth"
    cfg = load_config(str(ROOT / "config.yaml"), [f"model.name={model_dir}", "model.fast_inference=false"])
    if backend == "unsloth":
        backends.import_unsloth(cfg.model, training=True)  # before bench_prompt_tokens imports transformers
        os.environ["UNSLOTH_RETURN_HIDDEN_STATES"] = "1"
    from models import bench_prompt_tokens

    # The tiny model's problems have several prompt lengths: the smoke run takes the bench's 60.
    prompt_tokens = bench_prompt_tokens(model_dir, data) or 60
    model = backends.load_model_unsloth(cfg)[0] if backend == "unsloth" else backends.load_model_trl(cfg, None)[0]
    model.train()
    return cfg, model, prompt_tokens, backend, model_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds, each variant once a round")
    parser.add_argument("--smoke", action="store_true", help="check the harness on a CPU with the tiny model")
    parser.add_argument("--out", type=Path, help="default: bench/results/train-step.json (--smoke: bench/.work/)")
    args = parser.parse_args()
    out = args.out or (WORK / "train-step-smoke.json" if args.smoke else RESULTS / "train-step.json")
    cfg, model, prompt_tokens, backend, model_dir = load(args)

    import torch

    cuda = torch.cuda.is_available()
    device = next(model.parameters()).device
    ids, mask = step_batch(cfg, prompt_tokens, model.config.vocab_size, str(device))
    step = make_step(model, ids, mask, backend == "unsloth")
    dtypes = Dtypes(lora_weights(model))
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    eager = {"fp32-lora": step, "bf16-lora": step}
    times = measure(eager, args.rounds, sync, setup=dtypes.use)
    # Profiled after the timed rounds: the profiler's own overhead must not reach them.
    profiles = {}
    for name in eager:
        dtypes.use(name)
        profiles[name] = profiled(step, sync, out.parent, name)
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if cuda else "CPU (harness smoke test; not a benchmark)",
        "command": "python bench/train_step.py" + (" --smoke" if args.smoke else ""),
        "model": Path(model_dir).name,
        "backend": backend,
        "forward": "packed, as Unsloth's GRPO loss runs it" if backend == "unsloth" else "padded rows",
        "rows": ids.shape[0],
        "tokens": ids.shape[1],
        "lora_tensors": len(dtypes.weights),
        "lora_dtype_as_loaded": dtypes.loaded,
        "rounds": args.rounds,
        "variants": [row(name, times[name], profiles[name]) for name in eager],
    }
    write(summary, out)  # before the capture: what fails there must not cost the eager rows
    dtypes.use("fp32-lora")
    graph, failure = capture(step, cuda)
    graph_row = row("graph", [], {}, note=f"not captured: {failure}")
    if graph is not None:
        try:
            # In turns with fp32-lora once more, so that the two it compares share the host's moment.
            both = measure({"fp32-lora": step, "graph": graph.replay}, args.rounds, sync)
            summary["fp32_lora_beside_graph_s_median"] = round(statistics.median(both["fp32-lora"]), 4)
            graph_row = row("graph", both["graph"], profiled(graph.replay, sync, out.parent, "graph"))
        except Exception as error:  # a replay that fails is the finding, recorded in the table
            graph_row = row("graph", [], {}, note=f"captured, failed in replay: {why(error)}")
    summary["variants"].append(graph_row)
    write(summary, out)
    print(f"wrote {out} and {out.with_suffix('.md')}\n{markdown(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
