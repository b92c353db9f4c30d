"""Speed and memory of train_grpo.py, setting by setting, on one GPU, offline.

    python bench/bench.py                              # the sweep: every setting, 12 steps each, one invocation
    python bench/bench.py --settings default,trl       # some rows only
    python bench/bench.py --fit 7B:4,14B:4 --cap-gib 12,16,23.99   # rows of the fit table (bench/results/fit.json)
    python bench/bench.py --smoke                      # the harness itself, on a CPU, with the tiny model

It builds a random-weight model with a Qwen2.5 size's exact architecture and a tokenizer with its
vocabulary size (the hub is unreachable; random weights also make every completion run to the
length cap, so settings are comparable) and keeps the problems whose prompts have one token length
(see most_common_length), then runs train_grpo.main() for each setting in its own
process, capped to the memory of a 24 GB RTX 4090 (or --cap-gib). The sweep writes
bench/results/latest.json and latest.md: every row of one invocation, each with its phases per step
(generation, weight sync, log-probs, training) next to their physical floors on the GPU's measured
copy bandwidth and bf16 matrix rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import timeit
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import nvml  # noqa: E402
import phase_profile  # noqa: E402
import unsloth_notebook  # noqa: E402
from models import (  # noqa: E402
    CARD_GIB,
    DEFAULT_YAML,
    SIZES,
    bench_prompt_tokens,
    build_model,
    fit_config,
    fit_table,
    forecast_error,
    predicted_peak,
    shape_of,
    write_card_table,
)

import train_grpo  # noqa: E402
from recipe import backend as backends  # noqa: E402
from recipe import memory  # noqa: E402
from recipe.config import load_config  # noqa: E402
from recipe.jsonl import read_jsonl  # noqa: E402

WORK = ROOT / "bench" / ".work"
# A GPU sitting points this at an untracked folder: each device call copies the tracked tree anew.
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))


@dataclass(frozen=True)
class Setting:
    what: str
    config: Path
    overrides: tuple[str, ...] = ()
    entry: str = "train_grpo"  # or "notebook": bench/unsloth_notebook.py, the notebook's own calls
    env: tuple[tuple[str, str], ...] = ()  # set in the row's process, for switches only the environment reaches


# 12 steps after 4 of warm-up left 2 generation cycles at steps_per_generation 4 (1 at 8), and plain TRL's
# row moved 10% between invocations on one machine (LOG, 2026-12-06f). A sweep row times 10 whole cycles
# after its warm-up, whatever its cycle: 44 steps at 4, 84 at 8, and 14 for the notebook's, which
# generates every step. Six cycles left plain TRL's spread at 0.8-1.225 s/step and the 1.6x target inside
# the ratio's noise (LOG, 2026-12-07f); four more cost about 15 s a row.
SWEEP_CYCLES, SHORT_STEPS = 10, 12
NOTEBOOK_YAML = ROOT / "configs" / "notebook-4090.yaml"
FAST_YAML = ROOT / "configs" / "fast-4090.yaml"
VLLM_COMPILED = "model.vllm_compile=true"
# The recipe turns vLLM's detokenizer off (recipe/grpo_config.py's SAMPLING); TRL leaves it on.
DETOKENIZER = "training.trl.generation_kwargs={detokenize: true}"
# The rows of one sweep, in the order they run (the most telling first, so a lost machine costs the
# least): the shipped default, the same recipe on plain TRL, candidate levers, and the notebook.
SETTINGS = {
    "default": Setting("config.yaml as shipped", DEFAULT_YAML),
    # Plain transformers + PEFT + TRL's own colocated vLLM, no Unsloth: what a user would pick instead,
    # with TRL's default gradient checkpointing. Without it plain TRL does not fit a 24 GB card
    # (2026-12-02d: cuBLAS could not allocate in the first backward, at 24.6 GiB).
    "trl": Setting(
        "the same recipe on plain TRL + PEFT + TRL's vLLM, with its checkpointing",
        DEFAULT_YAML,
        ("model.backend=trl", "lora.gradient_checkpointing=true", DETOKENIZER),
    ),
    # The default until 2026-12-07: vLLM runs the adapter's kernels beside the weights (3 per adapted layer
    # per decoded token), and bitsandbytes' paged 8-bit AdamW synchronises with the GPU once per LoRA tensor.
    "lora-8bit": Setting(
        "the previous default: unfolded rollouts, paged 8-bit AdamW",
        DEFAULT_YAML,
        ("training.optim=paged_adamw_8bit",),
        env=((backends.FOLD_SWITCH, "0"),),
    ),
    # Four prompts a step: generation and training are host-bound at one (GPU 22% busy in training), so four
    # times the rows took 1.35 times the time (LOG 2026-12-07c, as row pps4gc). Checkpointed, to fit 24 GB.
    "fast": Setting("configs/fast-4090.yaml: 4 prompts (24 completions) a step, offloaded checkpointing", FAST_YAML),
    # The training step keeps the GPU 18% busy (2026-12-06b), so twice the completions a step may cost
    # far less than twice the time. Its activations fit the bench's 60-token prompts, not the 256-token
    # cap (forecast 27.2 GiB on a 24 GB card): pps2gc is the variant such a card could ship (15.3 GiB).
    "pps2": Setting("default with 2 prompts (12 completions) a step", DEFAULT_YAML, ("training.prompts_per_step=2",)),
    "pps2gc": Setting(
        "pps2 with Unsloth's offloaded gradient checkpointing",
        DEFAULT_YAML,
        ("training.prompts_per_step=2", "lora.gradient_checkpointing=unsloth"),
    ),
    # vLLM's default compilation (Inductor, piecewise and full CUDA graphs) instead of eager prefill with
    # decode-only graphs. On 2026-12-02d, with the adapter's kernels in every decode step, it decoded no
    # faster; over the folded model on 2026-12-07c it generated faster (0.268 s/step against 0.338), but
    # beside the graphed step and scoring (2026-12-08q) the step was not: 0.400 s/step against 0.390.
    "compiled": Setting("default with vLLM compiled (model.vllm_compile=true)", DEFAULT_YAML, (VLLM_COMPILED,)),
    # The default until 2026-12-07f: vLLM turns every sampled token into text that TRL never reads.
    "detok": Setting("default with vLLM's detokenizer, as TRL leaves it", DEFAULT_YAML, (DETOKENIZER,)),
    # The default until 2026-12-07j, when recipe/graphed_step.py's CUDA graphs took the training step.
    "ownstep": Setting(
        "default with TRL's and Unsloth's own training step and scoring", DEFAULT_YAML, ("training.cuda_graphs=false",)
    ),
    # vLLM 0.26 runs Qwen2 on its V2 model runner, whose decode step pins and copies its small inputs anew
    # (buffer_utils.async_copy_to_gpu: 19% of the default's generation samples in profile-default); the V1
    # runner, which Unsloth also patches, keeps persistent pinned buffers.
    "v1runner": Setting(
        "default on vLLM's V1 model runner (VLLM_USE_V2_MODEL_RUNNER=0)",
        DEFAULT_YAML,
        env=(("VLLM_USE_V2_MODEL_RUNNER", "0"),),
    ),
    # The notebook's own calls (bench/unsloth_notebook.py), not this recipe configured like it: the row every
    # "x the notebook" claim divides by. configs/notebook-4090.yaml gives it paths and step count.
    "notebook": Setting(
        "the notebook's code as a script: 4-bit, standby, generate every step, no KL", NOTEBOOK_YAML, entry="notebook"
    ),
    # The notebook's exported script comments out the cell that turns standby on. Run that way on an H100
    # it took 2.82 s/step (issue 32's outside check) against this bench's 3.5-3.8 with standby: the
    # faster of the two is the baseline no "x the notebook" may flatter.
    "notebook-script": Setting(
        "the notebook's exported script: as notebook, without standby",
        NOTEBOOK_YAML,
        entry="notebook",
        env=(("UNSLOTH_VLLM_STANDBY", "0"),),
    ),
}
# The sweep's rows when --settings is not given: the three and the levers.
SWEEP = ["default", "trl", "notebook-script", "detok", "compiled", "fast", "notebook"]
# With --fresh-caches, each variable moves an on-disk cache that later processes reuse into a folder of the
# row's own, so a row's start-up is a first run's whatever ran before it. Each is the name the pinned version
# reads (the commit that added them cites file and line).
FRESH_CACHE_DIRS = {
    "TRITON_CACHE_DIR": "triton",
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    # Unsloth's import drops TORCHINDUCTOR_CACHE_DIR, and Inductor then keeps its cache in tempfile.gettempdir().
    "TMPDIR": "tmp",
    # vLLM's torch.compile graphs, its FlashInfer autotuning and its model-architecture inspections.
    "VLLM_CACHE_ROOT": "vllm",
    "FLASHINFER_WORKSPACE_BASE": "flashinfer",
    "UNSLOTH_COMPILE_LOCATION": "unsloth_compiled_cache",
    # Unsloth's Mega-cache: torch.compile artifacts saved at exit, loaded by the next process of the same setup.
    "UNSLOTH_MEGA_CACHE_DIR": "unsloth_mega_cache",
    # The CUDA driver's cache of kernels it compiled from PTX (~/.nv/ComputeCache), for any without the card's SASS.
    "CUDA_CACHE_PATH": "nv",
}


def floors(shape: dict, cfg, backend: str, prompt_tokens: int, ceilings: dict) -> dict[str, float]:
    """Each phase's physical floor in seconds per optimizer step, on the measured ceilings.

    Decoding reads every weight once per generated token (batched rows share the read), so it is
    bound by memory bandwidth; the scoring and training passes are matrix products, bound by the
    bf16 rate: forward 2 FLOPs per weight per token, the backward pass to the activations 2 more
    (the frozen base gets no weight gradient), and gradient checkpointing runs the forward again.
    """
    t = cfg.training
    projection, _ = memory.parameter_counts(shape)
    matmul_params = projection + shape["vocab_size"] * shape["hidden_size"]  # the LM head is a matrix product too
    weight_bytes = memory.weights_gib(shape, cfg.model.load_in_4bit) * memory.GIB
    rows = t.prompts_per_step * t.num_generations
    tokens = rows * (prompt_tokens + t.max_completion_length)
    bandwidth, flops = ceilings["copy_gb_s"] * 1e9, ceilings["bf16_tflop_s"] * 1e12
    scoring_passes = (t.steps_per_generation > 1) + (t.beta > 0)  # old policy, reference
    train_passes = 3 if cfg.lora.gradient_checkpointing is not False else 2
    return {
        "generate": round(t.max_completion_length * weight_bytes / bandwidth / t.steps_per_generation, 4),
        # TRL merges the LoRA into a copy of the weights and loads it into vLLM: one read and one write.
        "sync_weights": round(2 * weight_bytes / bandwidth / t.steps_per_generation, 4) if backend == "trl" else 0.0,
        "log_probs": round(scoring_passes * 2 * matmul_params * tokens / flops, 4),
        "train": round(train_passes * 2 * matmul_params * tokens / flops, 4),
    }


# Each ceiling's operation runs this long before it is timed. After three warm-up calls (5 ms of work), the first
# invocation on a fresh H200 measured both ceilings 5% below the next one's, and so a floor 5% higher (2026-12-07m:
# 0.128 s against 0.122, the default 2.93x or 3.07x of it). Clocks still ramping are the likely cause, unmeasured.
CEILING_WARMUP_S = 2.0


def warm_up(fn, sync, seconds: float = CEILING_WARMUP_S, clock=time.perf_counter) -> int:
    """Call ``fn`` until ``seconds`` of it have run (at least 3 calls; ``sync`` waits for the GPU); the calls made."""
    calls, start = 0, clock()
    while calls < 3 or clock() - start < seconds:
        fn()
        calls += 1
        if calls % 8 == 0 or calls == 3:
            sync()
    sync()
    return calls


def measure_ceilings() -> dict[str, float]:
    """The GPU's measured ceilings: device-to-device copy bandwidth (bytes read + written) and the bf16
    matrix rate on random data (median of 20 timed 8192^3 products after CEILING_WARMUP_S of them)."""
    import torch

    def timed(fn, repeats: int = 20) -> float:
        warm_up(fn, torch.cuda.synchronize)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)

    src = torch.randn(2**30 // 2, dtype=torch.bfloat16, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    copy_s = timed(lambda: dst.copy_(src))
    n = 8192
    a, b = (torch.randn(n, n, dtype=torch.bfloat16, device="cuda") for _ in range(2))
    matmul_s = timed(lambda: a @ b)
    return {
        "copy_gb_s": round(2 * src.numel() * 2 / copy_s / 1e9, 1),
        "bf16_tflop_s": round(2 * n**3 / matmul_s / 1e12, 1),
    }


def gpu_name() -> str:
    found = nvml.gpu()
    if found is None:
        raise RuntimeError("no GPU can be read through NVML: the sweep measures one")
    return nvml.name(found)


class PeakMemory:
    """Peak GPU memory in use (NVML, the whole device), sampled from a thread."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self):
        found = nvml.gpu()
        if found is None:
            raise RuntimeError("no GPU can be read through NVML: the peak is measured on one")
        pynvml, handle = found

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


def run_capped(
    cap_gib: float | None,
    profile: Path,
    train_args: list[str],
    trace: tuple[Path, int, int] | None = None,
    entry: str = "train_grpo",
) -> int:
    """Run ``entry``'s main() (train_grpo.py, or bench/unsloth_notebook.py) on ``cap_gib`` of GPU memory and
    record TRL's profiling timers to ``profile``.

    ``trace`` = (out, first_step, steps) profiles those steps with bench/phase_profile.py.

    The rest of the card is taken by one idle allocation, after Unsloth's import. A per-process memory fraction would
    not do: it caps only PyTorch's allocator, and vLLM's KV cache is allocated outside it. Both
    backends size vLLM as model.gpu_memory_utilization of the memory free at start, so the
    config's fraction then means what it means on a card of ``cap_gib``.
    """
    import torch

    options = train_grpo.parse_args(train_args)
    cfg = load_config(options.config, options.overrides)
    # Before CUDA's first use, as main() imports it: Unsloth sets the CUDA allocator's options on import
    # (expandable segments, unless standby is on), and the first use fixes them for the process.
    if entry == "notebook":
        unsloth_notebook.import_unsloth(cfg.model)  # with the notebook's environment, before trl
    elif backends.resolve_backend(cfg) == "unsloth":
        backends.import_unsloth(cfg.model, training=True)  # before trl, as main() would
    blocker = None
    if cap_gib and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        if total - free > 2**30:  # more than this process's own CUDA context
            print(
                f"bench: warning: {(total - free) / 2**30:.1f} GiB of the GPU were already in use; figures will be off",
                flush=True,
            )
        blocker = torch.empty(int(total - cap_gib * 2**30), dtype=torch.uint8, device="cuda")
        print(
            f"bench: holding {blocker.numel() / 2**30:.1f} GiB so {cap_gib} GiB of {total / 2**30:.1f} are left",
            flush=True,
        )
    from trl.extras import profiling

    def record(self, duration: float) -> None:
        with open(profile, "a") as f:
            f.write(json.dumps({"name": self.name.split(".")[-1], "step": self.step, "seconds": duration}) + "\n")

    profiling.ProfilingContext._log_metrics = record
    callbacks = []
    if trace:
        profiler = phase_profile.PhaseProfiler(*trace)
        callbacks.append(profiler.callback())
        enter, exit_ = profiling.ProfilingContext.__enter__, profiling.ProfilingContext.__exit__

        def entered(self):
            profiler.enter(self.name.split(".")[-1])
            return enter(self)

        def exited(self, *exc):
            result = exit_(self, *exc)
            profiler.exit(self.name.split(".")[-1])
            return result

        profiling.ProfilingContext.__enter__, profiling.ProfilingContext.__exit__ = entered, exited
    code = (unsloth_notebook.main if entry == "notebook" else train_grpo.main)(train_args, callbacks=callbacks)
    del blocker
    return code


def cycles(rows: list[dict], steps_per_generation: int, warmup: int) -> list[float]:
    """Seconds per step of each whole generation cycle after the warm-up steps."""
    times = {row["step"]: row["time"] for row in rows if "step_time" in row}
    starts = [s for s in sorted(times) if s >= warmup and (s - warmup) % steps_per_generation == 0]
    return [(times[b] - times[a]) / steps_per_generation for a, b in zip(starts, starts[1:])]


def steady_state(each: list[float]) -> float:
    """Median seconds per step over the whole generation cycles ``cycles`` timed."""
    return statistics.median(each) if each else float("nan")


def ratio_interval(row: dict, peer: dict, resamples: int = 2000) -> list[float] | None:
    """A 90% interval of row/peer prompts/s, from each row's cycles resampled (a bootstrap of the medians,
    seeded): how far one invocation's ratio may be from its host's. None where a row has under 3 cycles."""
    a, b = row.get("s_per_step_cycles") or [], peer.get("s_per_step_cycles") or []
    if len(a) < 3 or len(b) < 3:
        return None
    draw = random.Random(0).choices
    prompts = [round(r["prompts_per_s"] * r["s_per_step"]) for r in (row, peer)]  # a step's, as configured
    ratios = sorted(
        prompts[0] / statistics.median(draw(a, k=len(a))) / (prompts[1] / statistics.median(draw(b, k=len(b))))
        for _ in range(resamples)
    )
    return [round(ratios[int(0.05 * resamples)], 2), round(ratios[int(0.95 * resamples) - 1], 2)]


def row_env(setting: Setting, caches: Path | None = None) -> dict[str, str]:
    """This process's environment with the row's switches, and without any other row's: a switch exported
    in the shell must not turn a row into another one. With ``caches`` (fresh_caches'), every compile cache
    in FRESH_CACHE_DIRS goes there, whatever the shell exported."""
    switches = {name for s in SETTINGS.values() for name, _ in s.env}
    env = {k: v for k, v in os.environ.items() if k not in switches} | dict(setting.env)
    if caches:
        env |= {name: str(caches / folder) for name, folder in FRESH_CACHE_DIRS.items()}
    return env


def fresh_caches(name: str) -> Path:
    """WORK/caches/NAME with an empty folder for each of FRESH_CACHE_DIRS, nothing of an earlier run's left.

    Each is made here: tempfile ignores a TMPDIR that does not exist, and Inductor would go back to /tmp.
    """
    caches = WORK / "caches" / name
    shutil.rmtree(caches, ignore_errors=True)
    for folder in FRESH_CACHE_DIRS.values():
        (caches / folder).mkdir(parents=True)
    return caches


def row_steps(args: argparse.Namespace, cycle: int) -> int:
    """A row's steps: --steps, or the warm-up and SWEEP_CYCLES generation cycles of ``cycle`` steps."""
    return args.steps or args.warmup + SWEEP_CYCLES * cycle


def run_setting(
    name: str, setting: Setting, args: argparse.Namespace, model: Path, data: Path, cap_gib: float | None
) -> dict:
    """Train ``setting`` for its row's steps in its own process under the memory cap; its measured row.

    A setting named in ``args.profile`` trains one generation cycle more, under bench/phase_profile.py;
    its figures come from the row's steps alone, and its row holds the profile.
    """
    out = WORK / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cycle = load_config(str(setting.config), list(setting.overrides)).training.steps_per_generation
    args = argparse.Namespace(**{**vars(args), "steps": row_steps(args, cycle)})
    traced = name in (args.profile or [])
    trace_steps = max(2, cycle) if traced else 0
    sets = [
        f"model.name={model}",
        f"data.dataset={data}",
        f"output.dir={out}",
        f"training.max_steps={args.steps + trace_steps}",
        # The row's steps set its length; an epoch count from its YAML (the notebook's 3) is refused beside them.
        "training.num_train_epochs=1",
        "output.save_steps=100000",
        "output.sample_every=100000",
        *setting.overrides,
    ]
    config = setting.config
    if args.smoke:  # the tiny model on a CPU: no 4-bit, no vLLM, shorter completions
        config = ROOT / "configs" / "tiny-cpu.yaml"
        sets += ["model.load_in_4bit=false", "model.fast_inference=false", "training.max_completion_length=64"]
    cfg = load_config(str(config), sets)
    train_args = ["--config", str(config)] + [arg for item in sets for arg in ("--set", item)]
    if cap_gib:
        train_args += ["--card-gib", str(cap_gib)]
    timers = out / "profile.jsonl"
    command = [sys.executable, str(Path(__file__).resolve()), "--capped-run", "--timers", str(timers)]
    command += ["--entry", setting.entry]
    if cap_gib:
        command += ["--cap-gib", str(cap_gib)]
    trace = out / "phases.json"
    if traced:
        command += ["--trace", str(trace), str(args.steps), str(trace_steps)]
    command += ["--", *train_args]
    shown = [*setting.overrides, *(f"{k}={v}" for k, v in setting.env)]
    print(f"\n=== {name}: {config.relative_to(ROOT)} {' '.join(shown)}", flush=True)
    caches = fresh_caches(name) if args.fresh_caches else None
    started = time.time()
    with open(out / "stdout.log", "w") as log, PeakMemory() if cap_gib else contextlib.nullcontext() as memory:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=row_env(setting, caches))
    wall_s = round(time.time() - started, 1)
    if caches:
        shutil.rmtree(caches)  # a row's compile caches take GBs of a GPU machine's disk, and no later row reads them
    text = (out / "stdout.log").read_text()
    result = {
        "name": name,
        "description": setting.what,
        "config": str(config.relative_to(ROOT)),
        "options": list(setting.overrides),
        **({"env": dict(setting.env)} if setting.env else {}),
        **({"caches": "fresh"} if caches else {}),
        "exit_code": code,
        "wall_s": wall_s,
    }
    peak_gib = memory.peak / 2**30 - blocked_gib(text) if cap_gib else None
    result["peak_gpu_gib"] = None if peak_gib is None else round(peak_gib, 2)
    if traced:
        profiled = json.loads(trace.read_text()) if trace.exists() else None
        if profiled:
            # The profiled cycle (and writing its table) is not part of the row's run.
            result["wall_s"] = round(result["wall_s"] - profiled["window_s"], 1)
            result["profile"] = profiled
        else:
            result["profile_error"] = "no profile written; see the log"
        measured = [r for r in read_jsonl(out / "metrics.jsonl") if "step_time" in r and r["step"] <= args.steps]
        if code != 0 and (out / "profile-started").exists() and len(measured) >= args.steps:
            # The measured steps finished before the profiler started: the row stands without a profile.
            result["profile_error"] = f"exit code {code} under the profiler: " + text[-1500:]
            result["exit_code"] = code = 0
    if code != 0:
        result["error"] = text[-3000:]
        result["fits"] = False if "out of memory" in text.lower() else None
        print(f"{name} failed with exit code {code}; log in {out / 'stdout.log'}", flush=True)
        return result
    result.update(measure(text, out, cfg, args))
    result["fits"] = None if peak_gib is None else peak_gib <= cap_gib
    print(json.dumps(result), flush=True)
    return result


def blocked_gib(text: str) -> float:
    match = re.search(r"bench: holding ([\d.]+) GiB", text)
    return float(match.group(1)) if match else 0.0


def phases(profile_s_per_step: dict[str, float], s_per_step: float) -> dict[str, float]:
    """Seconds per optimizer step by phase, from TRL's timers.

    _prepare_inputs holds the whole generation step: weight sync, vLLM, scoring under the old policy
    and the reference, and rewards; whatever is left of a step is the training forward and backward.
    """
    prepare = profile_s_per_step.get("_prepare_inputs", 0.0)
    generate = profile_s_per_step.get("generate", 0.0)
    sync = profile_s_per_step.get("sync_weights", 0.0)
    return {
        "generate": round(generate, 3),
        "sync_weights": round(sync, 3),
        "log_probs": round(max(0.0, prepare - generate - sync), 3),
        "train": round(max(0.0, s_per_step - prepare), 3),
    }


def measure(text: str, out: Path, cfg, args: argparse.Namespace) -> dict:
    """The row's figures from its log, metrics.jsonl and TRL's timers, over steps 1..args.steps (a
    profiled cycle after them is left out)."""
    last = getattr(args, "steps", None) or float("inf")
    rows = [row for row in read_jsonl(out / "metrics.jsonl") if row.get("step", 0) <= last]
    steps = [row for row in rows if "step_time" in row]
    loaded = re.search(r"loaded in (\d+)s: ([\d,]+) trainable", text)
    ready = re.search(r"ready to train in (\d+)s", text) or loaded
    backend = re.search(r"backend (\w+)", text)
    each = cycles(rows, cfg.training.steps_per_generation, args.warmup)
    s_per_step = steady_state(each)
    completions = cfg.training.prompts_per_step * cfg.training.num_generations
    tail = steps[args.warmup :]
    lengths = [row["completions/mean_length"] for row in tail if "completions/mean_length" in row]
    mean_len = statistics.mean(lengths) if lengths else float("nan")
    window = [p for p in read_jsonl(out / "profile.jsonl") if p["step"] is not None and args.warmup <= p["step"] < last]
    spent: dict[str, float] = {}
    for p in window:
        spent[p["name"]] = spent.get(p["name"], 0.0) + p["seconds"]
    profile = {k: round(v / max(1, len(tail)), 3) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
    return {
        "backend": backend.group(1) if backend else None,
        "load_s": int(loaded.group(1)) if loaded else None,
        "trainable_params": int(loaded.group(2).replace(",", "")) if loaded else None,
        "first_step_s": round(steps[0]["step_time"], 1) if steps else None,
        "ready_s": int(ready.group(1)) if ready else None,
        "startup_s": (int(ready.group(1)) + round(steps[0]["step_time"], 1)) if ready and steps else None,
        "s_per_step": round(s_per_step, 3),
        # The spread behind the median: two rows closer than it are not told apart.
        "s_per_step_cycles": [round(c, 3) for c in each],
        "steps": len(steps),
        "completions_per_step": completions,
        "mean_completion_tokens": round(mean_len, 1),
        "tokens_per_s": round(mean_len * completions / s_per_step, 1),
        "prompts_per_s": round(cfg.training.prompts_per_step / s_per_step, 3),
        "profile_s_per_step": profile,
        "phases_s_per_step": phases(profile, s_per_step),
    }


def on_fresh_caches(results: list[dict]) -> bool:
    """Whether the rows ran with --fresh-caches: start-ups of first runs, not to be set beside shared caches'."""
    return any(row.get("caches") == "fresh" for row in results)


def table(results: list[dict], device: str, prompt_tokens: int | None = None, host: dict | None = None) -> str:
    on = (
        f" on {host['cpu']} ({host['python_loop_ms']} ms for a 1M-step Python loop, {host['torch_op_us']} µs a small torch op)"
        if host
        else ""
    )
    lines = [
        f"Device: {device}{on}. "
        + (
            "The tiny model, uncapped."
            if device.startswith("CPU")
            else f"Random-weight Qwen2.5-3B shape, every prompt {prompt_tokens} tokens and every completion "
            f"{results[0].get('mean_completion_tokens', '?')}; memory capped to a 24 GB card."
        )
        + (" Each row started on fresh compile caches of its own." if on_fresh_caches(results) else ""),
        "",
        "| setting | what | start-up s | run wall s | s/step | prompts/s | generate / sync / log-probs / train s | floor s | peak GiB | fits 24 GB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("exit_code") is None:
            lines.append(f"| {r['name']} | {r['description']} | unfinished | | | | | | | |")
            continue
        if r.get("exit_code"):
            lines.append(
                f"| {r['name']} | {r['description']} | failed (exit {r['exit_code']}) | | | | | | {r.get('peak_gpu_gib')} | {r.get('fits')} |"
            )
            continue
        ph, fl = r["phases_s_per_step"], r.get("floor_s_per_step", {})
        split = " / ".join(f"{ph[k]:.2f}" for k in ("generate", "sync_weights", "log_probs", "train"))
        lines.append(
            f"| {r['name']} | {r['description']} | {r.get('startup_s')} | {r['wall_s']} | {r['s_per_step']} | {r['prompts_per_s']} | "
            f"{split} | {sum(fl.values()):.3f} | {r['peak_gpu_gib']} | {r['fits']} |"
        )
    return "\n".join(lines) + "\n"


def host_record(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """The host's CPU and its single-thread speed, best of 3: a Python loop and a small torch op.

    The default's training-only steps took 0.20-0.28 s on one H100 machine and 0.30-0.45 on another, while
    plain TRL's took 0.30-0.41 on both (2026-12-07 and 07c). Whether the host's CPU made the difference is
    untested: each invocation records which host it had, to tell.
    """
    import torch

    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]

    def best(run) -> float:
        return min(timeit.repeat(run, number=1, repeat=3))

    a, b, c = torch.ones(1), torch.ones(1), torch.empty(1)
    ops = 20_000
    return {
        "cpu": names[0] if names else "unknown",
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python_loop_ms": round(1e3 * best(lambda: sum(i * i for i in range(1_000_000))), 1),
        "torch_op_us": round(1e6 * best(lambda: [torch.add(a, b, out=c) for _ in range(ops)]) / ops, 2),
    }


def prime_vllm(model: Path) -> None:
    """Let vLLM inspect the model's architecture before the first row times anything.

    vLLM does it in a subprocess the first time it meets an architecture on a machine and caches the
    answer: 29 s for Qwen2 on the H200, charged to whichever row started first (2026-12-02b).
    """
    started = time.time()
    code = "import sys; from vllm.config import ModelConfig; ModelConfig(model=sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True)
    if done.returncode == 0:
        print(f"vLLM knows {model.name}'s architecture ({time.time() - started:.0f}s)", flush=True)
    else:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"warning: could not prime vLLM for {model.name}; the first row pays it: {tail}", flush=True)


def ensure_model(size: str) -> tuple[Path, Path]:
    """The random-weight model of ``size`` and its prompts, built in a process of their own.

    Memory this process held would be missing from every setting's cap; a GPU disk holds about
    two 14B folders, so other sizes are deleted first.
    """
    model, data = WORK / f"qwen2.5-{size.lower()}-random", WORK / f"prompts-{size.lower()}.jsonl"
    if not ((model / "config.json").exists() and data.exists()):
        for other in WORK.glob("qwen2.5-*-random"):
            shutil.rmtree(other)
        started = time.time()
        subprocess.check_call([sys.executable, str(Path(__file__).resolve()), "--build", size, str(model), str(data)])
        print(f"built {model} in {time.time() - started:.0f}s", flush=True)
    return model, data


def tiny_model() -> tuple[Path, Path]:
    """The tiny model and its problems, the harness checks' stand-in on a CPU (offline.py builds them once)."""
    subprocess.check_call([sys.executable, str(ROOT / "offline.py"), "tiny", "--out", str(WORK / "tiny")])
    return WORK / "tiny" / "model", WORK / "tiny" / "data" / "train.jsonl"


def ceilings() -> dict[str, float]:
    out = subprocess.check_output([sys.executable, str(Path(__file__).resolve()), "--ceilings"], text=True)
    return json.loads(out.strip().splitlines()[-1])


def sweep(args: argparse.Namespace) -> int:
    """Every setting of --settings in one invocation; latest.json holds exactly this invocation's rows."""
    names = args.settings.split(",")
    if args.smoke:
        skipped = [n for n in names if SETTINGS[n].entry != "train_grpo"]
        if skipped:
            print(f"smoke: {', '.join(skipped)} left out (Unsloth, which they call directly, needs a GPU)", flush=True)
        names = [n for n in names if n not in skipped]
        model, data = tiny_model()
        device, limits, cap = "CPU (harness smoke test; not a benchmark)", None, None
    else:
        model, data = ensure_model("3B")
        if not args.fresh_caches:  # its answer lands in the shared cache, which no fresh row reads
            prime_vllm(model)
        device, limits, cap = gpu_name(), ceilings(), args.cap_gib
        print(f"ceilings: {json.dumps(limits)}", flush=True)  # in the console log too, for --from-log
    tokens = bench_prompt_tokens(model, data)
    host = host_record()
    print(f"host: {json.dumps(host)}", flush=True)
    invocation = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    results = []
    for name in names:
        row = run_setting(name, SETTINGS[name], args, model, data, cap)
        results.append(annotate(row, name, invocation, tokens, limits, cap))
        if "profile" in row:
            row["profile"] = write_profile(row, device, args.out.parent)
        # After every row, so a machine lost mid-sweep keeps the rows it finished and names the rest.
        write_summary(args, results, invocation, device, tokens, cap, limits, pending=names[len(results) :], host=host)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.md')}\n{table(results, device, tokens, host)}")
    return 0


def write_profile(row: dict, device: str, folder: Path) -> str:
    """The row's profile as folder/profile-NAME.json and .md; the JSON's file name, for the row."""
    summary = {
        "name": row["name"],
        "description": row["description"],
        "config": row["config"],
        "options": row["options"],
        "device": device,
        "invocation": row["invocation"],
        "date": time.strftime("%Y-%m-%d"),
        "command": f"python bench/bench.py --profile {row['name']}",
        "s_per_step_unprofiled": row.get("s_per_step"),
        **row["profile"],
    }
    out = folder / f"profile-{row['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    out.with_suffix(".md").write_text(phase_profile.markdown(row["name"], summary))
    return out.name


def annotate(row: dict, name: str, invocation: str, tokens: int | None, limits: dict | None, cap: float | None) -> dict:
    """The invocation id, each phase's floor and the memory forecast made for the row's setting."""
    row["invocation"] = invocation
    if cap and round(cap) == 24 and "fits" in row:
        row["fits_24gb"] = row["fits"]  # the name for "fits the cap" when the cap is a 24 GB card
    setting = SETTINGS.get(name)
    if setting is None:  # a row of an older log whose setting is gone: as measured, with no floor or forecast
        return row
    if limits and tokens and row.get("exit_code") == 0:
        cfg = load_config(str(setting.config), list(setting.overrides))
        row["floor_s_per_step"] = floors(shape_of("3B"), cfg, row["backend"], tokens, limits)
    # recipe/memory.py forecasts train_grpo.py; the notebook's standby mode sizes vLLM its own way.
    if tokens and cap and setting.entry == "train_grpo":
        row["predicted_peak_gib"] = predicted_peak(setting.config, list(setting.overrides), "3B", cap, tokens)
        row["forecast_error"] = forecast_error(row["predicted_peak_gib"], row.get("peak_gpu_gib"))
    return row


def write_summary(
    args: argparse.Namespace,
    results: list[dict],
    invocation: str,
    device: str,
    tokens: int | None,
    cap: float | None,
    limits: dict | None,
    note: str | None = None,
    pending: list[str] | None = None,
    host: dict | None = None,
) -> None:
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    by_name = {r["name"]: r for r in results if r.get("exit_code") == 0}
    summary = {
        "invocation": invocation,
        "device": device,
        **({"host": host} if host else {}),
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(["python", "bench/bench.py", *sys.argv[1:]]),
        "steps_per_setting": args.steps or f"{args.warmup} + {SWEEP_CYCLES} generation cycles",
        "warmup_steps": args.warmup,
        "prompt_tokens": tokens,
        "memory_cap_gib": cap,
        **({"caches": "fresh"} if on_fresh_caches(results) else {}),
        "ceilings": limits,
        **({"note": note} if note else {}),
        **({"not_finished": pending} if pending else {}),
        "settings": results,
    }
    default = by_name.get("default")
    for peer in ("trl", "notebook", "notebook-script"):
        if default and peer in by_name:
            summary[f"prompts_per_s_default_vs_{peer}"] = round(
                default["prompts_per_s"] / by_name[peer]["prompts_per_s"], 2
            )
            summary[f"prompts_per_s_default_vs_{peer}_90pct"] = ratio_interval(default, by_name[peer])
            summary[f"startup_s_default_vs_{peer}"] = [default["startup_s"], by_name[peer]["startup_s"]]
            summary[f"wall_s_default_vs_{peer}"] = [default["wall_s"], by_name[peer]["wall_s"]]
    notebooks = [row for name, row in by_name.items() if SETTINGS.get(name) and SETTINGS[name].entry == "notebook"]
    if default and notebooks:  # with standby and without: no ratio may divide by the slower notebook
        fastest = max(notebooks, key=lambda row: row["prompts_per_s"])
        summary["notebook_baseline"] = fastest["name"]
        summary["prompts_per_s_default_vs_notebook_baseline"] = round(
            default["prompts_per_s"] / fastest["prompts_per_s"], 2
        )
    if "trl" in by_name:
        summary["prompts_per_s_vs_trl"] = {
            name: round(row["prompts_per_s"] / by_name["trl"]["prompts_per_s"], 2) for name, row in by_name.items()
        }
    if "learning" in previous:  # written by bench/learning.py; a speed rerun keeps it
        summary["learning"] = previous["learning"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(results, device, tokens, host))


def printed_rows(text: str) -> dict[str, dict]:
    """The rows run_setting printed to a console log, by setting name."""
    return {row["name"]: row for row in (json.loads(line) for line in text.splitlines() if line.startswith('{"name"'))}


def logged_steps(printed: dict[str, dict]) -> int | None:
    """The steps a logged sweep or fit ran every row: its rows say so (None where they differ, as a sweep's
    rows of different cycles do); before they said, every one ran 12."""
    said = {row["steps"] for row in printed.values() if row.get("steps")}
    if not said:
        return SHORT_STEPS
    return said.pop() if len(said) == 1 else None


def from_log(args: argparse.Namespace) -> int:
    """latest.json from a sweep's console log: the rows it printed, one per finished setting.

    For a sweep whose machine went away before the end: the rows are as measured and printed then; a
    setting that started but printed no row is recorded as unfinished. Floors use --ceilings. With
    --invocation, the rows keep the id the sweep gave them (its partial latest.json has it).
    """
    text = Path(args.from_log).read_text()
    printed = printed_rows(text)
    args.steps = args.steps or logged_steps(printed)
    started = re.findall(r"^=== (\S+):", text, flags=re.M)
    invocation = args.invocation or "log-" + uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:8]
    limits = json.loads(args.ceilings_json) if args.ceilings_json else None
    logged_host = re.search(r"^host: (\{.*\})$", text, flags=re.M)
    host = json.loads(logged_host.group(1)) if logged_host else None
    results = []
    for name in started:
        row = printed.get(name) or {
            "name": name,
            "description": SETTINGS[name].what if name in SETTINGS else name,
            "exit_code": None,
            "error": "unfinished: the GPU machine's time ran out during this setting",
        }
        results.append(annotate(row, name, invocation, args.prompt_tokens, limits, args.cap_gib))
        if isinstance(row.get("profile"), dict):
            row["profile"] = write_profile(row, args.device, args.out.parent)
    write_summary(
        args, results, invocation, args.device, args.prompt_tokens, args.cap_gib, limits, args.note, host=host
    )
    print(table(results, args.device, args.prompt_tokens, host))
    return 0


def fit(args: argparse.Namespace) -> int:
    """Rows of the fit table: each SIZE:BITS trained under each --cap-gib; rows merge into fit.json by key."""
    out = RESULTS / "fit.json"
    table_rows = (
        {(r["model"], r["bits"], r["cap_gib"]): r for r in json.loads(out.read_text())["rows"]} if out.exists() else {}
    )
    # With --from-log, the rows a fit printed before its machine went away, instead of running them.
    printed = printed_rows(Path(args.from_log).read_text()) if args.from_log else None
    if printed is not None:
        args.steps = args.steps or logged_steps(printed)
    device = args.device if printed is not None else gpu_name()
    for i, item in enumerate(args.fit.split(",")):
        size, bits = item.split(":")
        if printed is None:
            model, data = ensure_model(size)
            # Every Qwen2.5 size is one architecture to vLLM: inspected once per machine (and read by no fresh row).
            if i == 0 and not args.fresh_caches:
                prime_vllm(model)
            prompt_tokens = bench_prompt_tokens(model, data)
        else:
            prompt_tokens = args.prompt_tokens
        for cap in args.caps:
            config, overrides = fit_config(size, int(bits), cap)
            name = f"fit-{size}-{bits}bit-{cap:g}gib"
            if printed is None:
                setting = Setting(f"Qwen2.5-{size} {bits}-bit under {cap:g} GiB", config, tuple(overrides))
                row = run_setting(name, setting, args, model, data, cap)
            elif name in printed:
                row = printed[name]
            else:
                print(f"{args.from_log} has no finished row {name}; skipped", flush=True)
                continue
            command = f"python bench/bench.py --fit {size}:{bits} --cap-gib {cap:g} --steps {args.steps}"
            command += " --fresh-caches" if row.get("caches") == "fresh" else ""
            predicted = predicted_peak(config, overrides, size, cap, prompt_tokens)
            table_rows[(f"Qwen2.5-{size}", int(bits), cap)] = {
                "model": f"Qwen2.5-{size}",
                "bits": int(bits),
                "cap_gib": cap,
                "fits": row["fits"] if not row["exit_code"] else False,
                "exit_code": row["exit_code"],
                "s_per_step": row.get("s_per_step"),
                "peak_gpu_gib": row.get("peak_gpu_gib"),
                "predicted_peak_gib": predicted,
                "forecast_error": forecast_error(predicted, row.get("peak_gpu_gib")),
                "startup_s": row.get("startup_s"),
                **({"caches": row["caches"]} if "caches" in row else {}),
                "trainable_params": row.get("trainable_params"),
                "config": str(config.relative_to(ROOT)),
                "options": overrides,
                "command": command,
                "device": device,
                "date": args.date or time.strftime("%Y-%m-%d"),
                "error_tail": row.get("error", "")[-400:] or None,
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            rows = sorted(
                table_rows.values(), key=lambda r: (float(r["model"].split("-")[1][:-1]), r["bits"], r["cap_gib"])
            )
            out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
            out.with_suffix(".md").write_text(fit_table(rows))
    write_card_table(RESULTS)
    print(out.with_suffix(".md").read_text())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--settings",
        help=f"comma-separated, from {', '.join(SETTINGS)} (default: {','.join(SWEEP)}; with --profile alone: those)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help=f"steps per setting (default: the sweep's rows {SWEEP_CYCLES} generation cycles after the warm-up; "
        f"{SHORT_STEPS} for --fit and --smoke, "
        "which need the peak and the harness only)",
    )
    parser.add_argument("--warmup", type=int, default=4, help="steps left out of the steady-state figures")
    parser.add_argument(
        "--fresh-caches",
        action="store_true",
        help="give each row empty compile caches of its own (bench/.work/caches/ROW, removed after the row), "
        "so every start-up is a first run's whatever ran before it",
    )
    parser.add_argument(
        "--cap-gib",
        default=str(CARD_GIB),
        help="GiB of GPU memory to emulate, comma-separated for --fit (default: a 24 GB RTX 4090)",
    )
    parser.add_argument(
        "--fit",
        metavar="SIZE:BITS,...",
        help=f"fit-table rows instead of the sweep, sizes from {', '.join(SIZES)}, e.g. 7B:4,14B:4",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--smoke", action="store_true", help="check the harness on a CPU with the tiny model")
    parser.add_argument(
        "--card-table",
        action="store_true",
        help="write bench/results/cards.md, README's model x card table, from fit.json, latest.json and the forecast",
    )
    parser.add_argument(
        "--from-log",
        help="write latest.json (with --fit: fit.json) from a sweep's or fit's console log (a run cut short)",
    )
    parser.add_argument("--date", help="with --from-log --fit: the day the log was measured (default: today)")
    parser.add_argument("--device", help="with --from-log: the GPU the log was measured on")
    parser.add_argument("--prompt-tokens", type=int, help="with --from-log: the bench prompts' one length")
    parser.add_argument("--ceilings-json", help='with --from-log: {"copy_gb_s": ..., "bf16_tflop_s": ...} of that GPU')
    parser.add_argument("--note", help="with --from-log: where the rows and ceilings come from")
    parser.add_argument("--invocation", help="with --from-log: the sweep's own invocation id for its rows")
    parser.add_argument("--capped-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceilings", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--profile",
        metavar="SETTING,...",
        help="profile these settings' rows (one generation cycle after the measured steps, under torch.profiler): "
        "bench/results/profile-SETTING.{json,md}; alone, these rows are all that run",
    )
    parser.add_argument("--timers", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--entry", default="train_grpo", choices=["train_grpo", "notebook"], help=argparse.SUPPRESS)
    parser.add_argument("--trace", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--prepare",
        metavar="SIZE",
        help="build SIZE's random-weight model and prompts into bench/.work, as a sweep (3B) or fit row would first, and stop",
    )
    parser.add_argument("--build", nargs=3, metavar=("SIZE", "MODEL", "DATA"), help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.prepare:
        ensure_model(args.prepare)
        return 0
    if args.build:
        build_model(Path(args.build[1]), Path(args.build[2]), args.build[0])
        return 0
    if args.ceilings:
        print(json.dumps(measure_ceilings()))
        return 0
    if not args.from_log:  # a log's rows say how many steps they ran
        args.steps = args.steps or (SHORT_STEPS if args.fit or args.smoke else None)
    args.caps = [float(cap) for cap in args.cap_gib.split(",")]
    args.cap_gib = args.caps[0]
    if args.capped_run:
        trace = (Path(args.trace[0]), int(args.trace[1]), int(args.trace[2])) if args.trace else None
        return run_capped(args.cap_gib, args.timers, rest[1:] if rest[:1] == ["--"] else rest, trace, args.entry)
    if args.smoke and args.out == RESULTS / "latest.json":
        args.out = WORK / "smoke.json"  # a harness check never replaces measured results
    if args.card_table:
        print(write_card_table(RESULTS).read_text(), end="")
        return 0
    if args.fit:
        return fit(args)
    if args.from_log:
        return from_log(args)
    args.profile = args.profile.split(",") if args.profile else []
    if args.settings is None and args.profile:
        # A profile alone is its own invocation: it must not replace the sweep's latest.json.
        args.settings = ",".join(args.profile)
        if args.out == RESULTS / "latest.json":
            args.out = WORK / "profile-sweep.json"
    args.settings = args.settings or ",".join(SWEEP)
    unknown = [n for n in args.settings.split(",") + args.profile if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}: choose from {', '.join(SETTINGS)}")
    return sweep(args)


if __name__ == "__main__":
    sys.exit(main())
