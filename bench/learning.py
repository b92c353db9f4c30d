"""The SmolLM2 learning check: arms x seeds trained side by side on one GPU, each evaluated, summarised.

    python bench/learning.py --arms default,fast,notebook --seeds 3                # on a GPU: latest.json "learning"
    python bench/learning.py --arms default,pps2 --seeds 3 --dry-run              # the commands it would run
    python bench/learning.py --plot                                                  # time-to-accuracy.png from latest.json
    python bench/learning.py --summarize RES/learn --device "NVIDIA H200"           # from runs copied off a lost machine

One held-out evaluation of 200 problems has a standard error of about 3.5 points, so an arm is the
mean and standard deviation over seeds. Every arm is configs/smollm2-learn.yaml (SmolLM2-135M-Instruct,
4 prompts x 8 completions a step, learning rate 1e-4) with the optimisation of one recipe: a change
to the default's optimizer, steps_per_generation or prompts a step lands only if its arm's mean held-out
accuracy is no more than 2 points below ``default``'s, measured in the same sitting. An arm with k times
the prompts a step trains 1/k of the steps: every arm sees the same questions.

The runs share the GPU (each with its own Unsloth compile folder and --vllm-gib of memory for its
vLLM), so their minutes are slower than alone and comparable with each other only. Each run:
train_grpo.py, then eval_grpo.py on the held-out split and on GSM-Symbolic (strict format is the
trained model's rate of completions in the exact tag format); an evaluation that fails among the others
is run again alone once they have all ended. Needs the SmolLM2 assets (offline.py smollm2 --prime-steps 150).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import nvml  # noqa: E402

from recipe.backend import FOLD_SWITCH  # noqa: E402
from recipe.config import load_config  # noqa: E402
from recipe.jsonl import read_jsonl  # noqa: E402
from recipe.runs import MARKER  # noqa: E402

RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))
CONFIG = "configs/smollm2-learn.yaml"
HELD_OUT = "assets/smollm2/data/test.jsonl"
KEYS = {"reward": "reward", "strict_format": "rewards/strict_format/mean", "correctness": "rewards/correctness/mean"}
# A change to the default's optimisation may cost at most this much mean held-out accuracy (issue 32).
TOLERANCE = 0.02
MERGED_LINE = "Merged-weight rollouts on"  # what Unsloth prints once when it folds the adapter for rollouts
# An evaluation that fails beside its neighbours (its vLLM found no memory for a KV cache: LOG, 2026-12-07j)
# is tried once more alone, after every lane has ended, within this many seconds past them all.
EVAL_RETRY_S = 180.0


@dataclass(frozen=True)
class Arm:
    what: str
    overrides: tuple[str, ...]
    # Times the config's prompts per step. Such an arm trains 1/prompts of the steps, so every arm sees the
    # same questions and compares at the same epochs, as a user's run would.
    prompts: int = 1
    # Set for its training command only, for switches only the environment reaches; evaluation stays the same
    # for every arm.
    env: tuple[tuple[str, str], ...] = ()


ARMS = {
    "default": Arm(
        "config.yaml's optimisation: spg 4, fused AdamW, folded rollouts", ("training.steps_per_generation=4",)
    ),
    # The bench's lora-8bit row: the default until 2026-12-07.
    "lora-8bit": Arm(
        "the previous default's: spg 4, paged 8-bit AdamW, unfolded rollouts",
        ("training.steps_per_generation=4", "training.optim=paged_adamw_8bit"),
        env=((FOLD_SWITCH, "0"),),
    ),
    # The default's optimisation without checkpointing, as config.yaml trains the 3B, so that
    # recipe/graphed_step.py's CUDA graphs take the step (they decline checkpointing); ownstep is the same
    # through TRL's and Unsloth's own step, the bench's ownstep row.
    "graphed": Arm(
        "config.yaml's, no checkpointing: recipe/graphed_step.py's and graphed_scoring.py's CUDA graphs",
        ("training.steps_per_generation=4", "lora.gradient_checkpointing=false"),
    ),
    "ownstep": Arm(
        "config.yaml's, no checkpointing: TRL's and Unsloth's own step and scoring",
        ("training.steps_per_generation=4", "lora.gradient_checkpointing=false", "training.cuda_graphs=false"),
    ),
    # Checked as pps4 on 2026-12-07 (LOG 2026-12-07e): 48.3 ± 2.1% against the default's 47.7 ± 0.8%.
    "fast": Arm(
        "configs/fast-4090.yaml's: 4 times the prompts a step for a quarter of the steps, spg 4",
        ("training.steps_per_generation=4",),
        prompts=4,
    ),
    "pps2": Arm(
        "config.yaml's with twice the prompts a step for half the steps: spg 4",
        ("training.steps_per_generation=4",),
        prompts=2,
    ),
    # configs/notebook-4090.yaml's: TRL's defaults for what the notebook leaves unset. Unsloth's torch.compile
    # stays off: on SmolLM2's 32-row batches the compiler crashed (bench/LOG.md, 2026-11-24). Its rollouts stay
    # unfolded, as the notebook's (4-bit) must be.
    "notebook": Arm(
        "configs/notebook-4090.yaml's: spg 1, no KL, dapo loss, 8-bit AdamW",
        (
            "training.steps_per_generation=1",
            "training.beta=0.0",
            "training.loss_type=dapo",
            "training.weight_decay=0.001",
            "training.optim=adamw_8bit",
        ),
        env=((FOLD_SWITCH, "0"),),
    ),
}


@dataclass(frozen=True)
class Run:
    arm: str
    seed: int
    out: Path
    commands: tuple[tuple[str, ...], ...]
    env: dict


def plan(
    arms: list[str], seeds: list[int], steps: int, share: float, outputs: Path, symbolic: str, python: str
) -> list[Run]:
    """One run per arm and seed: its training command, its two evaluations and its environment. Seed by
    seed, so that side by side every arm starts as early and shares the GPU with as many neighbours."""
    runs = []
    per_step = load_config(str(ROOT / CONFIG)).training.prompts_per_step
    for seed in seeds:
        for arm in arms:
            out = outputs / f"{arm}-s{seed}"
            prompts = ARMS[arm].prompts
            sets = [
                *ARMS[arm].overrides,
                f"training.prompts_per_step={per_step * prompts}",
                f"training.seed={seed}",
                f"training.max_steps={steps // prompts}",
                f"output.dir={out}",
                f"model.gpu_memory_utilization={share}",
                # No learning effect, 20-30 s less start-up each (config.yaml's choice too).
                "model.vllm_compile=false",
                "output.save_steps=100000",
            ]
            switches = tuple(f"{name}={value}" for name, value in ARMS[arm].env)
            train = (
                *(("env", *switches) if switches else ()),
                *(python, "train_grpo.py", "--config", CONFIG),
                *[a for s in sets for a in ("--set", s)],
            )
            evals = tuple(
                (python, "eval_grpo.py", "--adapter", str(out / "adapter"), "--dataset", data, "--out", str(out / name))
                for name, data in (("eval", HELD_OUT), ("eval-gsm-symbolic", symbolic))
            )
            env = {
                "UNSLOTH_COMPILE_LOCATION": f"/tmp/ucc-learn-{arm}-s{seed}",
                "OMP_NUM_THREADS": "2",
                "PYTHONUNBUFFERED": "1",
            }
            runs.append(Run(arm, seed, out, (train, *evals), env))
    return runs


def free_gib() -> float | None:
    """The GPU's free memory now (None without a GPU)."""
    found = nvml.gpu()
    return None if found is None else found[0].nvmlDeviceGetMemoryInfo(found[1]).free / 2**30


def with_share(train: tuple[str, ...], share: float) -> tuple[str, ...]:
    """The training command with its vLLM share (model.gpu_memory_utilization) replaced."""
    key = "model.gpu_memory_utilization="
    return tuple(f"{key}{share}" if arg.startswith(key) else arg for arg in train)


def lane_env(run: Run) -> dict[str, str]:
    """This process's environment with the run's own, and without any arm's switch: one exported in the
    shell would turn every arm into that arm (bench.py's rows drop theirs alike)."""
    switches = {name for arm in ARMS.values() for name, _ in arm.env}
    return {k: v for k, v in os.environ.items() if k not in switches} | run.env


def start(command: list[str] | tuple[str, ...], run: Run, log) -> subprocess.Popen:
    """``command`` in a session of its own, logging to ``log``: stopped, the whole lane goes, not only its
    first process, so nothing it started holds GPU memory into what runs next (LOG, 2026-12-06d: the sweep
    after it failed). The child keeps its own copy of the log's descriptor."""
    return subprocess.Popen(
        command, cwd=ROOT, env=lane_env(run), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def finish(lane: subprocess.Popen, timeout_s: float) -> int | None:
    """The lane's exit code, or None where it was still going after ``timeout_s`` (at least 1 s) and was
    stopped with everything it started."""
    try:
        return lane.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        os.killpg(lane.pid, signal.SIGKILL)
        lane.wait()
        return None


def run_all(
    runs: list[Run], stagger_s: float, deadline_s: float, vllm_gib: float | None = None
) -> dict[str, int | None]:
    """Every run's commands in order, the runs side by side, each start ``stagger_s`` after the one before;
    a run still going at ``deadline_s`` is stopped with everything it started. Each run's exit code (None:
    stopped), by output folder.

    vLLM sizes its memory as a share of what is free when it starts, which shrinks as neighbours start:
    with ``vllm_gib`` each run's share is set then, so that every run's vLLM gets that much.
    """
    started, lanes = time.time(), {}
    for run in runs:
        run.out.mkdir(parents=True, exist_ok=True)
        commands, note = run.commands, ""
        free = free_gib() if vllm_gib else None
        if free:
            share = round(min(0.9, vllm_gib / free), 4)
            commands, note = (
                (with_share(commands[0], share), *commands[1:]),
                f" (vLLM share {share} of {free:.1f} GiB free)",
            )
        script = " && ".join(shlex.join(c) for c in commands)
        with open(run.out / "lane.log", "w") as log:
            lanes[str(run.out)] = start(["bash", "-c", script], run, log)
        print(f"{time.strftime('%T')} started {run.out.name}{note}", flush=True)
        time.sleep(stagger_s)
    codes: dict[str, int | None] = {}
    for out, lane in lanes.items():
        codes[out] = finish(lane, deadline_s - (time.time() - started))
        print(
            f"{time.strftime('%T')} {Path(out).name}: {'stopped at the deadline' if codes[out] is None else f'exit {codes[out]}'}",
            flush=True,
        )
    return codes


def owed_evaluations(run: Run) -> list[tuple[str, ...]]:
    """The run's evaluation commands without a summary.json, where its training finished (the adapter
    written whole); none where it did not, as there is nothing to evaluate."""
    if not (run.out / "adapter" / MARKER).exists():
        return []
    return [c for c in run.commands[1:] if not (Path(c[c.index("--out") + 1]) / "summary.json").exists()]


def retry_evaluations(runs: list[Run], codes: dict[str, int | None], budget_s: float) -> dict[str, int | None]:
    """Each failed run's owed evaluations once more, one at a time, with the GPU to themselves, all within
    ``budget_s``; the run's exit code becomes the retry's (None: out of time). Runs stopped at the
    deadline are not retried: their time is up."""
    end = time.time() + budget_s
    for run in runs:
        owed = owed_evaluations(run) if codes.get(str(run.out)) not in (0, None) else []
        if not owed:
            continue
        code: int | None = 0
        with open(run.out / "lane.log", "a") as log:
            for command in owed:
                code = finish(start(command, run, log), end - time.time())
                if code != 0:
                    break
        codes[str(run.out)] = code
        outcome = "out of time" if code is None else f"exit {code}"
        print(f"{time.strftime('%T')} {run.out.name}: evaluations retried alone: {outcome}", flush=True)
    return codes


def first_vs_last(rows: list[dict], window: int) -> dict:
    return {
        name: {
            f"first_{window}": round(statistics.mean(r[key] for r in rows[:window]), 4),
            f"last_{window}": round(statistics.mean(r[key] for r in rows[-window:]), 4),
        }
        for name, key in KEYS.items()
    }


def summarize_run(run: Path, window: int = 20) -> dict:
    """A finished run's training summary from its metrics.jsonl and saved config (TRL logs rewards on
    generation steps only)."""
    rows = read_jsonl(run / "metrics.jsonl")  # a run stopped at the deadline may leave a cut last line
    steps = [r for r in rows if "reward" in r]
    timed = [r for r in rows if "step_time" in r]
    config = yaml.safe_load((run / "config.yaml").read_text())
    log = (run / "lane.log").read_text(errors="replace") if (run / "lane.log").exists() else ""
    return {
        "config": config,
        **kv_cache(log, config),
        # Folding is the environment's switch, not the config's: only Unsloth's line shows that a run folded.
        "merged_rollouts": MERGED_LINE in log,
        "steps": max(r["step"] for r in rows if "step" in r),
        "reward_rows": len(steps),
        "minutes": round((timed[-1]["time"] - timed[0]["time"] + timed[0]["step_time"]) / 60, 2),
        # A run of few generation steps (the fast arm's 7 of 25 steps) compares its first and last halves.
        "training_rewards": first_vs_last(steps, max(1, min(window, len(steps) // 2))),
        # Training correctness against minutes since the first step began: the time-to-accuracy curve.
        "curve": [
            [round((r["time"] - timed[0]["time"] + timed[0]["step_time"]) / 60, 3), round(r[KEYS["correctness"]], 4)]
            for r in steps
        ],
    }


def kv_cache(log: str, config: dict) -> dict:
    """vLLM's KV cache in the training run (the first engine its log reports) against what one generation
    batch can fill: a smaller cache queues and recomputes sequences, and the run's minutes grow with it."""
    found = re.search(r"GPU KV cache size: ([\d,]+) tokens", log)
    t = config.get("training", {})
    batch = t.get("prompts_per_step", 1) * t.get("num_generations", 1) * t.get("steps_per_generation", 1)
    return {
        "kv_cache_tokens": int(found.group(1).replace(",", "")) if found else None,
        "generation_batch_tokens": batch * config.get("model", {}).get("max_seq_length", 0),
    }


def evaluation(path: Path) -> dict | None:
    """The trained model's accuracy and strict-format rate from eval_grpo.py's summary.json."""
    if not path.exists():
        return None
    models = json.loads(path.read_text())["models"]
    trained, base = models["trained"], models.get("base", {})
    return {
        "accuracy": trained["accuracy"],
        "strict_format": trained["strict_format"],
        "n": trained["n"],
        "base_accuracy": base.get("accuracy"),
    }


def mean_sd(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None,
        "n": len(values),
    }


def aggregate(results: list[dict]) -> dict:
    """Per arm: mean and sd over its finished seeds of held-out accuracy, strict format, GSM-Symbolic and
    minutes; and each arm's mean held-out accuracy against ``default``'s."""
    arms: dict[str, dict] = {}
    for name in dict.fromkeys(r["arm"] for r in results):
        done = [r for r in results if r["arm"] == name and r.get("held_out")]
        known = ARMS.get(name, Arm("an arm no longer in ARMS", ()))
        arm = {"what": known.what, "overrides": list(known.overrides), "seeds_finished": len(done)}
        if known.prompts > 1:
            arm["prompts_a_step_times"] = known.prompts
        if done:
            arm["held_out_accuracy"] = mean_sd([r["held_out"]["accuracy"] for r in done])
            arm["held_out_strict_format"] = mean_sd([r["held_out"]["strict_format"] for r in done])
            symbolic = [r["gsm_symbolic"] for r in done if r.get("gsm_symbolic")]
            if symbolic:
                arm["gsm_symbolic_accuracy"] = mean_sd([s["accuracy"] for s in symbolic])
                arm["gsm_symbolic_strict_format"] = mean_sd([s["strict_format"] for s in symbolic])
            arm["minutes"] = mean_sd([r["training"]["minutes"] for r in done])
        arms[name] = arm
    base = arms.get("default", {}).get("held_out_accuracy")
    for arm in arms.values():
        if base and "held_out_accuracy" in arm:
            delta = arm["held_out_accuracy"]["mean"] - base["mean"]
            arm["vs_default_points"] = round(100 * delta, 1)
            arm["within_2_points_of_default"] = delta >= -TOLERANCE - 1e-9
    return arms


def collect(runs: list[Run], codes: dict[str, int | None]) -> list[dict]:
    results = []
    for run in runs:
        result = {"arm": run.arm, "seed": run.seed, "dir": str(run.out), "exit_code": codes.get(str(run.out))}
        if (run.out / "metrics.jsonl").exists() and (run.out / "config.yaml").exists():
            try:
                result["training"] = summarize_run(run.out)
            except (ValueError, KeyError, IndexError, statistics.StatisticsError) as error:
                result["training_error"] = repr(error)
        result["held_out"] = evaluation(run.out / "eval" / "summary.json")
        result["gsm_symbolic"] = evaluation(run.out / "eval-gsm-symbolic" / "summary.json")
        results.append(result)
    return results


def steps_trained(learning: dict) -> str:
    """The steps each arm trained: those with more prompts a step trained fewer, on the same questions."""
    times = {name: arm.get("prompts_a_step_times", 1) for name, arm in learning["arms"].items()}
    fewer = [f"{name} {learning['steps'] // k}" for name, k in times.items() if k > 1]
    return f"{learning['steps']} steps" + (f" ({', '.join(fewer)}: the same questions)" if fewer else "")


def table(learning: dict) -> str:
    lines = [
        f"SmolLM2 learning check, {steps_trained(learning)}, {learning['seeds']} seeds per arm, side by side on "
        f"{learning['device']} ({learning['date']}); mean ± sd over seeds.",
        "",
        "| arm | what | seeds evaluated | held-out accuracy | vs default | strict format | GSM-Symbolic | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(arm: dict, key: str, scale: float = 100.0) -> str:
        if key not in arm:
            return ""
        v = arm[key]
        return f"{scale * v['mean']:.1f} ± {scale * v['sd']:.1f}" if v["sd"] is not None else f"{scale * v['mean']:.1f}"

    for name, arm in learning["arms"].items():
        delta = f"{arm['vs_default_points']:+.1f}" if "vs_default_points" in arm else ""
        lines.append(
            f"| {name} | {arm['what']} | {arm['seeds_finished']} | {cell(arm, 'held_out_accuracy')} | {delta} | "
            f"{cell(arm, 'held_out_strict_format')} | {cell(arm, 'gsm_symbolic_accuracy')} | {cell(arm, 'minutes', 1.0)} |"
        )
    return "\n".join(lines) + "\n"


def write(learning: dict, out: Path) -> None:
    """Into ``out`` (latest.json) under "learning", keeping the rest; the table beside it as learning.md."""
    summary = json.loads(out.read_text()) if out.exists() else {}
    summary["learning"] = learning
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    (out.parent / "learning.md").write_text(table(learning))


def gpu_name() -> str:
    found = nvml.gpu()
    return "unknown" if found is None else nvml.name(found)


def plot(out: Path, png: Path) -> Path:
    """Time to accuracy: each arm's training correctness (mean over seeds) against minutes, and its final
    held-out accuracy (mean ± sd over seeds) at its mean training minutes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learning = json.loads(out.read_text())["learning"]
    fig, (curves, final) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, arm in learning["arms"].items():
        runs = [r for r in learning["runs"] if r["arm"] == name and r.get("training")]
        if not runs:
            continue
        (line,) = curves.plot([], [], label=name)
        for r in runs:
            x, y = zip(*r["training"]["curve"]) if r["training"]["curve"] else ((), ())
            window = 5
            smooth = [statistics.mean(y[max(0, i - window + 1) : i + 1]) for i in range(len(y))]
            curves.plot(x, smooth, color=line.get_color(), alpha=0.6)
        if "held_out_accuracy" in arm:
            acc, minutes = arm["held_out_accuracy"], arm["minutes"]
            final.errorbar(
                minutes["mean"], 100 * acc["mean"], yerr=100 * (acc["sd"] or 0), xerr=minutes["sd"] or 0,
                fmt="o", color=line.get_color(), label=f"{name} ({arm['seeds_finished']} evaluated)", capsize=3,
            )  # fmt: skip
    curves.set(xlabel="minutes of training", ylabel="training correctness reward (of 2.0)", title="during training")
    final.set(xlabel="minutes of training", ylabel="held-out accuracy, %", title="after training (mean ± sd)")
    curves.legend()
    final.legend()
    fig.suptitle(
        f"SmolLM2-135M, {steps_trained(learning)}, {learning['seeds']} seeds per arm trained side by side on one GPU"
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", default="default,fast,notebook", help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (3407, 3408, ...)")
    parser.add_argument("--steps", type=int, default=200)
    # vLLM sizes its KV cache from the device's free memory while it starts, so a neighbour that allocates
    # meanwhile shrinks it. At a fixed share of 0.06 the later runs got KV caches smaller than their
    # generation batch (25k tokens for spg 4's 128 x 512) and generated 5-10 times slower (LOG, 2026-12-06d).
    parser.add_argument(
        "--vllm-gib",
        type=float,
        default=6.0,
        help="GiB of GPU memory each run's vLLM takes (its share is set at its start)",
    )
    parser.add_argument("--share", type=float, default=0.06, help="each run's vLLM share where no GPU can be read")
    parser.add_argument("--stagger", type=float, default=20.0, help="seconds between two runs' starts")
    parser.add_argument("--deadline", type=float, default=1500.0, help="seconds after which unfinished runs stop")
    parser.add_argument("--outputs", type=Path, default=ROOT / "outputs" / "learn")
    parser.add_argument(
        "--symbolic", default="assets/gsm-symbolic/test.jsonl", help="GSM-Symbolic questions for eval_grpo.py"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    parser.add_argument(
        "--summarize",
        type=Path,
        metavar="DIR",
        help="summarise the ARM-sSEED run folders in DIR (as bench/gpu_session.sh copies them) instead of running",
    )
    parser.add_argument("--device", help="with --summarize: the GPU they ran on")
    parser.add_argument("--note", help="with --summarize: how the runs went, for the summary's note")
    parser.add_argument("--plot", action="store_true", help="draw --out's learning as time-to-accuracy.png beside it")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)

    if args.plot:
        print(f"wrote {plot(args.out, args.out.parent / 'time-to-accuracy.png')}")
        return 0
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}: choose from {', '.join(ARMS)}")
    uneven = [a for a in arms if args.steps % ARMS[a].prompts]
    if uneven:
        parser.error(
            f"--steps {args.steps} does not divide by the prompts multiple of {uneven}: every arm must see the same questions"
        )
    seeds = [3407 + i for i in range(args.seeds)]
    outputs = args.summarize or args.outputs
    runs = plan(arms, seeds, args.steps, args.share, outputs, args.symbolic, sys.executable)
    if args.dry_run:
        for run in runs:
            print(" ".join(f"{k}={v}" for k, v in run.env.items()), " && ".join(shlex.join(c) for c in run.commands))
        return 0
    started = time.time()
    codes = {} if args.summarize else run_all(runs, args.stagger, args.deadline, args.vllm_gib)
    if not args.summarize:
        codes = retry_evaluations(runs, codes, EVAL_RETRY_S)
    results = collect(runs, codes)
    learning = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device or gpu_name(),
        "command": shlex.join(["python", "bench/learning.py", *(argv if argv is not None else sys.argv[1:])]),
        "config": CONFIG,
        "steps": args.steps,
        "seeds": args.seeds,
        "side_by_side": len(runs),
        **({} if args.summarize else {"wall_minutes": round((time.time() - started) / 60, 1)}),
        "note": args.note
        or f"{len(runs)} runs shared one GPU, started {args.stagger:g} s apart: minutes compare arms with each other, not with a run alone",
        "arms": aggregate(results),
        "runs": results,
    }
    write(learning, args.out)
    print(table(learning))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
