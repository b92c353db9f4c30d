"""Where a training step's time goes, phase by phase: a torch.profiler trace and a sampler of Python stacks.

bench.py --profile NAMES runs each named setting's measured steps as usual, then one more generation
cycle (steps_per_generation steps) under ``PhaseProfiler``. Phases are cut at TRL's own
``profiling_context`` names (trl/extras/profiling.py) and at the Trainer's optimizer callbacks:

    generate   TRL's vLLM.generate
    sync       TRL's sync_weights (Unsloth's shared engine makes it a no-op)
    log_probs  the rest of TRL's _prepare_inputs: scoring under the old policy and the reference, rewards
    optimizer  from on_pre_optimizer_step to on_optimizer_step
    train      the rest of the step: the loss's forward and backward, gradient clipping
    other      between steps: logging and callbacks

For each: wall seconds per step, the share of that time the GPU was busy (any kernel, copy or set),
kernels run, kernel and graph launches, host-device synchronisations (cuda*Synchronize, blocking
cudaMemcpy), the host's hotspots (the innermost Python function of the main thread, sampled
every few milliseconds), the GPU's (the kernels that ran longest, counted where they were launched) and
what launched the most kernels (the innermost torch op around each launch; none for Triton's, from
Python). ``summarize`` turns a Chrome trace (as torch.profiler exports it) and the samples into that
table; it needs no GPU, so tests feed it recorded events.
"""

from __future__ import annotations

import bisect
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

PHASES = ("generate", "sync", "log_probs", "train", "optimizer", "other")
# The range a phase starts with; ranges nest (a step holds _prepare_inputs, which holds generate), and a
# moment belongs to the innermost one. TRL's other ranges (compute_loss, rewards, scoring) are transparent.
RANGE_PHASE = {
    "generate": "generate",
    "sync_weights": "sync",
    "_prepare_inputs": "log_probs",
    "optimizer": "optimizer",
    "step": "train",
    "window": "other",
}
MARK = "phase:"  # prefix of the record_function ranges this module opens
SYNC_CALLS = {
    "cudaDeviceSynchronize",
    "cudaStreamSynchronize",
    "cudaEventSynchronize",
    "cudaMemcpy",
    "cudaMemcpy2D",
    "cuCtxSynchronize",
    "cuStreamSynchronize",
    "cuEventSynchronize",
}
LAUNCH_CALLS = {"cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch"}
GPU_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}


def kernel_name(name: str) -> str:
    """A kernel's name without its return type and argument list: template arguments still tell kernels apart."""
    name = name.removeprefix("void ").strip()
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, 0, -1):
            depth += (name[i] == ")") - (name[i] == "(")
            if depth == 0:
                name = name[:i]
                break
    return name


def short(name: str, width: int = 60) -> str:
    """A kernel's name cut to a table cell."""
    return name if len(name) <= width else name[: width - 1] + "…"


NO_OP = "no torch op"  # a launch from Python itself: Triton kernels, or a library called directly


def innermost_ops(events: list[dict]):
    """A function from a launch event to the innermost torch op around it on its thread, or NO_OP."""
    by_thread: dict = {}
    for e in events:
        if e.get("cat") == "cpu_op":
            start = float(e["ts"])
            by_thread.setdefault(e.get("tid"), []).append((start, start + float(e.get("dur", 0)), e.get("name", "")))
    op_at = {tid: label_at(innermost(ops)) for tid, ops in by_thread.items()}

    def launcher(e: dict) -> str:
        at = op_at.get(e.get("tid"))
        return (at(float(e["ts"])) if at else None) or NO_OP

    return launcher


def innermost(ranges: list[tuple[float, float, str]], label=lambda name: name) -> list[tuple[float, float, str]]:
    """Non-overlapping (start, end, label) pieces of nested (start, end, name) ranges.

    Each moment goes to the innermost range open then (the one opened last); names whose ``label`` is
    None are ignored.
    """
    edges = []
    for i, (start, end, name) in enumerate(ranges):
        if label(name) is not None and end > start:
            edges += [(start, 1, i), (end, 0, i)]  # at a shared instant, close before opening
    edges.sort()
    pieces, open_ranges, last = [], [], None
    for t, opening, i in edges:
        if open_ranges and last is not None and t > last:
            # The innermost: opened last, and on a tie (same microsecond) the shorter.
            inner = max(open_ranges, key=lambda j: (ranges[j][0], ranges[j][0] - ranges[j][1]))
            pieces.append((last, t, label(ranges[inner][2])))
        if opening:
            open_ranges.append(i)
        else:
            open_ranges.remove(i)
        last = t
    merged: list[tuple[float, float, str]] = []
    for start, end, name in pieces:
        if merged and merged[-1][2] == name and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end, name)
        else:
            merged.append((start, end, name))
    return merged


def label_at(segments: list[tuple[float, float, str]]):
    """A function from a moment to the label of the ``innermost`` segment holding it, or None."""
    starts = [s for s, _, _ in segments]

    def at(t: float) -> str | None:
        i = bisect.bisect_right(starts, t) - 1
        return segments[i][2] if i >= 0 and t < segments[i][1] else None

    return at


def union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def overlap(busy: list[tuple[float, float]], start: float, end: float) -> float:
    """Length of the disjoint, sorted ``busy`` intervals inside [start, end]."""
    i = max(0, bisect.bisect_right(busy, (start, float("inf"))) - 1)
    total = 0.0
    while i < len(busy) and busy[i][0] < end:
        total += max(0.0, min(end, busy[i][1]) - max(start, busy[i][0]))
        i += 1
    return total


def summarize(trace: dict, samples: Counter | None = None, steps: int = 1, top: int = 3) -> dict:
    """The per-phase table of one profiled window, per optimizer step.

    ``trace``: a Chrome trace (``{"traceEvents": [...]}``, times in microseconds) holding this module's
    ``phase:NAME`` ranges; ``samples``: Counter of (phase, hotspot) from ``StackSampler``.
    """
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "ts" in e]
    ranges = [
        (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), e["name"][len(MARK) :])
        for e in events
        if str(e.get("name", "")).startswith(MARK) and e.get("cat") != "gpu_user_annotation"
    ]
    segments = innermost(ranges, RANGE_PHASE.get)
    phase_at = label_at(segments)

    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES]
    busy = union([(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in gpu])
    rows = {
        p: dict.fromkeys(("wall_s", "gpu_busy_s", "kernels", "launches", "graph_launches", "syncs"), 0) for p in PHASES
    }
    for start, end, phase in segments:
        rows[phase]["wall_s"] += (end - start) / 1e6
        rows[phase]["gpu_busy_s"] += overlap(busy, start, end) / 1e6
    # A kernel belongs to the phase that launched it (the GPU runs behind the host); by its own start
    # when the trace does not link it to a launch.
    launched_in = {}
    launcher = innermost_ops(events)
    launched_by: dict[str, Counter] = {p: Counter() for p in PHASES}
    for e in events:
        if e.get("cat") not in ("cuda_runtime", "cuda_driver"):
            continue
        phase, name = phase_at(float(e["ts"])), e.get("name", "")
        if phase is None:
            continue
        if name in LAUNCH_CALLS:
            rows[phase]["launches"] += 1
            rows[phase]["graph_launches"] += name == "cudaGraphLaunch"
            launched_in[e.get("args", {}).get("correlation")] = phase
            launched_by[phase][launcher(e)] += 1
        if name in SYNC_CALLS:
            rows[phase]["syncs"] += 1
    gpu_time: dict[str, Counter] = {p: Counter() for p in PHASES}
    for e in gpu:
        if e.get("cat") == "kernel":
            phase = launched_in.get(e.get("args", {}).get("correlation")) or phase_at(float(e["ts"]))
            if phase is not None:
                rows[phase]["kernels"] += 1
                gpu_time[phase][kernel_name(e.get("name", ""))] += float(e.get("dur", 0))
    by_phase: dict[str, Counter] = {p: Counter() for p in PHASES}
    for (phase, spot), n in (samples or Counter()).items():
        if phase in by_phase:
            by_phase[phase][spot] += n
    table = {}
    for phase in PHASES:
        r = rows[phase]
        if r["wall_s"] == 0 and not by_phase[phase]:
            continue
        seen, kernel_us = sum(by_phase[phase].values()), sum(gpu_time[phase].values())
        table[phase] = {
            "wall_s_per_step": round(r["wall_s"] / steps, 4),
            "gpu_busy": round(r["gpu_busy_s"] / r["wall_s"], 3) if r["wall_s"] else None,
            "kernels_per_step": round(r["kernels"] / steps, 1),
            "launches_per_step": round(r["launches"] / steps, 1),
            "graph_launches_per_step": round(r["graph_launches"] / steps, 1),
            "syncs_per_step": round(r["syncs"] / steps, 1),
            "host_samples": seen,
            "hotspots": [{"where": spot, "share": round(n / seen, 3)} for spot, n in by_phase[phase].most_common(top)],
            "launched_by": [
                {"op": op, "share": round(n / r["launches"], 3)} for op, n in launched_by[phase].most_common(top)
            ],
            "kernel_s_per_step": round(kernel_us / 1e6 / steps, 4),
            "top_kernels": [
                {
                    "name": name,
                    "s_per_step": round(us / 1e6 / steps, 4),
                    "share": round(us / kernel_us, 3) if kernel_us else 0.0,
                }
                for name, us in gpu_time[phase].most_common(top)
            ],
        }
    return table


def markdown(name: str, summary: dict) -> str:
    """One setting's profile as README-ready Markdown."""
    head = (
        f"Profile of `{name}` ({summary.get('description', '')}): {summary['steps']} steps from step "
        f"{summary['first_step']} under torch.profiler on {summary.get('device', '?')}, invocation "
        f"{summary.get('invocation', '?')}. Per optimizer step; GPU busy is the share of the phase's wall "
        "time with a kernel, copy or set running; hotspots are the main thread's innermost Python "
        "function, as a share of the phase's stack samples."
    )
    lines = [
        head,
        "",
        "| phase | wall s | GPU busy | kernels | launches (graphs) | host syncs | top host hotspots |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, r in summary["phases"].items():
        busy = "" if r["gpu_busy"] is None else f"{100 * r['gpu_busy']:.0f}%"
        spots = "; ".join(f"{h['where']} {100 * h['share']:.0f}%" for h in r["hotspots"])
        lines.append(
            f"| {phase} | {r['wall_s_per_step']:.3f} | {busy} | {r['kernels_per_step']:g} | "
            f"{r['launches_per_step']:g} ({r['graph_launches_per_step']:g}) | {r['syncs_per_step']:g} | {spots} |"
        )
    kernels = [(phase, r) for phase, r in summary["phases"].items() if r.get("top_kernels")]
    if kernels:
        lines += [
            "",
            "Kernel time is the sum of the kernels' own durations, counted in the phase that launched them "
            "(it can exceed the phase's busy time when kernels run into the next phase).",
            "",
            "| phase | kernel s | top GPU kernels | launched most by |",
            "|---|---|---|---|",
        ]
        for phase, r in kernels:
            tops = "; ".join(f"`{short(k['name'])}` {100 * k['share']:.0f}%" for k in r["top_kernels"])
            by = "; ".join(f"`{short(k['op'])}` {100 * k['share']:.0f}%" for k in r.get("launched_by", []))
            lines.append(f"| {phase} | {r['kernel_s_per_step']:.3f} | {tops.replace('|', '/')} | {by} |")
    return "\n".join(lines) + "\n"


def where(frame) -> str:
    """``package/module.py:function`` of a frame, with site-packages and the folders above a project file cut off."""
    path = frame.f_code.co_filename
    for marker in ("site-packages/", "dist-packages/", "/tmp/site/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = Path(path).name
    return f"{path}:{frame.f_code.co_name}"


class StackSampler:
    """Samples the main thread's innermost Python frame every ``interval`` seconds, tagged with the phase
    ``phase_of()`` names at that moment."""

    def __init__(self, phase_of, interval: float = 0.002):
        self.phase_of, self.interval = phase_of, interval
        self.samples: Counter = Counter()
        self._stop = threading.Event()
        self._main = threading.main_thread().ident

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main)
            if frame is not None:
                caller = f" < {frame.f_back.f_code.co_name}" if frame.f_back is not None else ""
                self.samples[(self.phase_of(), where(frame) + caller)] += 1

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class PhaseProfiler:
    """Profiles optimizer steps [first_step, first_step + steps) of a run and writes ``out`` (JSON).

    Hand ``callback()`` to the Trainer and call ``enter``/``exit`` with TRL's profiling-context names
    (bench.py patches trl.extras.profiling.ProfilingContext to do so).
    """

    def __init__(self, out: Path, first_step: int, steps: int, meta: dict | None = None):
        self.out, self.first_step, self.steps, self.meta = out, first_step, steps, meta or {}
        self.active = False
        self._open: list[tuple[str, object]] = []
        self.stack: list[str] = []

    def phase(self) -> str:
        for name in reversed(self.stack):
            if name in RANGE_PHASE:
                return RANGE_PHASE[name]
        return "other"

    def enter(self, name: str) -> None:
        if not self.active:
            return
        import torch

        mark = torch.profiler.record_function(MARK + name)
        mark.__enter__()
        self._open.append((name, mark))
        self.stack.append(name)

    def exit(self, name: str) -> None:
        if not self.active or not self.stack or self.stack[-1] != name:
            return
        self.stack.pop()
        self._open.pop()[1].__exit__(None, None, None)

    def start(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        self.out.parent.mkdir(parents=True, exist_ok=True)
        (self.out.parent / "profile-started").write_text(str(time.time()))
        self._started = time.time()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self._profile = profile(activities=activities)
        self._profile.__enter__()
        self._sampler = StackSampler(self.phase).__enter__()
        self.active = True
        self.enter("window")

    def stop(self) -> dict:
        import torch

        while self.stack:
            self.exit(self.stack[-1])
        self.active = False
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._sampler.__exit__(None, None, None)
        self._profile.__exit__(None, None, None)
        trace_path = self.out.with_suffix(".trace.json")
        self._profile.export_chrome_trace(str(trace_path))
        trace = json.loads(trace_path.read_text())
        trace_path.unlink()
        summary = {
            **self.meta,
            "first_step": self.first_step + 1,
            "steps": self.steps,
            "phases": summarize(trace, self._sampler.samples, self.steps),
            "window_s": round(time.time() - self._started, 1),
        }
        self.out.write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def callback(self):
        from transformers import TrainerCallback

        profiler = self

        class Profile(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == profiler.first_step:
                    profiler.start()
                profiler.enter("step")

            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                profiler.enter("optimizer")

            def on_optimizer_step(self, args, state, control, **kwargs):
                profiler.exit("optimizer")

            def on_step_end(self, args, state, control, **kwargs):
                profiler.exit("step")
                if profiler.active and state.global_step >= profiler.first_step + profiler.steps:
                    profiler.stop()

        return Profile()
