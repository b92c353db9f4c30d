"""Training curves of a GRPO run as PNGs: rewards, completion length, KL and step time.

    python plots.py outputs/qwen2.5-3b-grpo/metrics.jsonl                 # -> outputs/qwen2.5-3b-grpo/plots/*.png
    python plots.py outputs/tiny-cpu/metrics.jsonl --out /tmp/plots
    python -m pytest tests/test_plots.py -q

Each curve is drawn twice: every logged step, thin and faint, and a smoothed trend on top (a
debiased moving average whose window grows with the run, ~1/10 of the steps). Dashed lines mark the
best score each reward can give (rewards.MAX_REWARD). Panels whose metric the run did not log (KL
when training.beta is 0, say) are left out. train_grpo.py calls plot_metrics() when training ends.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import typing
from pathlib import Path

import yaml

import rewards
from recipe import runs
from recipe.errors import RecipeError
from recipe.jsonl import DamagedJsonl, read_jsonl, write_atomic

RAW_STYLE = {"linewidth": 0.8, "alpha": 0.35}
TREND_STYLE = {"linewidth": 2.2}
BEST_STYLE = {"linestyle": "--", "color": "0.45", "linewidth": 1.0}
# The trend window: a tenth of the run, so 20 steps are barely smoothed and 1,000 are smoothed over 100.
SMOOTH_FRACTION = 0.1
MAX_WINDOW = 200
REDRAW = "free space or pass --out another folder, then draw them again with python plots.py"
ELSEWHERE = "pass --out another folder"  # where a write is refused: plots.py takes a folder, not output.dir


def read_steps(path: Path) -> list[dict]:
    """One record per training step; the Trainer's closing summary line has no reward and is skipped.

    A last line still being written (or cut off by a kill) is left out, so a running run plots too.
    """
    if not path.is_file():
        raise RecipeError(f"{path} not found: pass the metrics.jsonl that train_grpo.py writes into output.dir")
    try:
        records = read_jsonl(path)
    except DamagedJsonl as error:
        raise RecipeError(f"{path}:{error.number} is not JSON: is this a metrics.jsonl of train_grpo.py?") from None
    except OSError as error:
        raise RecipeError(f"cannot read {path} ({error.strerror}): pass a metrics.jsonl you can read") from None
    by_step = {}
    for row in records:
        if "reward" in row and "step" in row:
            by_step[row["step"]] = row  # a step logged twice (a resumed run) keeps its latest record
    if not by_step:
        raise RecipeError(f"{path} holds no training steps yet (no line with a 'reward')")
    return [by_step[step] for step in sorted(by_step)]


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) where ``key`` was logged as a finite number."""
    points = [
        (row["step"], row[key]) for row in rows if isinstance(row.get(key), (int, float)) and math.isfinite(row[key])
    ]
    return [p[0] for p in points], [p[1] for p in points]


def smooth(values: list[float], window: int | None = None) -> list[float]:
    """Exponential moving average with a span of ``window`` points, debiased so it starts at the data, not at 0."""
    window = window or min(MAX_WINDOW, max(1, round(len(values) * SMOOTH_FRACTION)))
    decay = 1 - 2 / (window + 1)
    total = weight = 0.0
    out = []
    for value in values:
        total = decay * total + value
        weight = decay * weight + 1
        out.append(total / weight)
    return out


def run_config(metrics_path: Path) -> dict:
    """The run's saved config.yaml (next to metrics.jsonl), for the reward weights and the length budget."""
    path = metrics_path.parent / "config.yaml"
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError, OSError):  # no weights or budget line is better than no plot
        return {}
    return config if isinstance(config, dict) else {}


def reward_names(rows: list[dict]) -> list[str]:
    """Rewards in the order they were logged (the config's order)."""
    keys = dict.fromkeys(key for row in rows for key in row)
    return [key.split("/")[1] for key in keys if key.startswith("rewards/") and key.endswith("/mean")]


def draw(ax, steps: list[float], values: list[float], label: str | None = None, color: str | None = None) -> None:
    """The raw curve, faint, under its smoothed trend in the same colour."""
    from matplotlib.ticker import MaxNLocator

    (line,) = ax.plot(steps, values, color=color, **RAW_STYLE)
    ax.plot(steps, smooth(values), color=line.get_color(), label=label, **TREND_STYLE)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers, never 2.5


def best_line(ax, value: float, label: str) -> None:
    ax.axhline(value, label=label, **BEST_STYLE)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, 0), max(high, value * 1.08))


def save(fig, path: Path) -> Path:
    """The figure as a PNG, rendered in memory and written aside and renamed: a kill never leaves half of one."""
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)  # a long training process would otherwise keep every figure
    with runs.writing(path, REDRAW, elsewhere=ELSEWHERE):
        write_atomic(path, png.getvalue())
    return path


def plot_rewards(rows: list[dict], config: dict, out: Path) -> Path:
    """Total reward and one panel per reward function, each against its best possible score."""
    import matplotlib.pyplot as plt

    names = reward_names(rows)
    weights = {name: float((config.get("rewards") or {}).get(name, 1.0)) for name in names}
    columns = min(3, len(names) + 1)
    grid_rows = math.ceil((len(names) + 1) / columns)
    fig, axes = plt.subplots(grid_rows, columns, figsize=(4.6 * columns, 3.3 * grid_rows), sharex=True, squeeze=False)
    total = axes[0][0]
    draw(total, *series(rows, "reward"), color="black")
    best_line(total, sum(weights[n] * rewards.MAX_REWARD.get(n, 0.0) for n in names), "best possible")
    total.set_title("total reward (weighted sum)", fontweight="bold")
    for ax, name in zip(axes.flat[1:], names):
        draw(ax, *series(rows, f"rewards/{name}/mean"))
        best = rewards.MAX_REWARD.get(name)
        if best is not None:
            best_line(ax, best, "best possible")
        ax.set_title(name if best is None else f"{name} (best {best:g})")
    panels = len(names) + 1
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("mean reward per completion")
    # The lowest visible panel of each column carries the step axis, also above an empty cell.
    for ax in axes.flat[max(0, panels - columns) : panels]:
        ax.tick_params(labelbottom=True)
        ax.set_xlabel("training step")
    fig.suptitle(
        f"Rewards over {rows[-1]['step']} steps   (faint: every step, bold: trend, dashed: best possible)", y=1.0
    )
    fig.tight_layout()
    return save(fig, out / "rewards.png")


def plot_length(rows: list[dict], config: dict, out: Path) -> Path | None:
    """Completion length with its per-step range, and the share of completions cut off at the budget."""
    import matplotlib.pyplot as plt

    steps, mean = series(rows, "completions/mean_length")
    if not steps:
        return None
    clipped = series(rows, "completions/clipped_ratio")
    fig, axes = plt.subplots(
        2 if clipped[0] else 1,
        1,
        figsize=(8, 6 if clipped[0] else 3.6),
        sharex=True,
        squeeze=False,
        height_ratios=[2, 1] if clipped[0] else None,
    )
    ax = axes[0][0]
    low, high = series(rows, "completions/min_length")[1], series(rows, "completions/max_length")[1]
    if len(low) == len(high) == len(steps):
        ax.fill_between(steps, low, high, alpha=0.12, label="shortest to longest")
    draw(ax, steps, mean, label="mean")
    budget = (config.get("training") or {}).get("max_completion_length")
    if isinstance(budget, int):
        best_line(ax, budget, f"max_completion_length ({budget})")
    ax.set_title("completion length", fontweight="bold", loc="left")
    ax.set_ylabel("tokens")
    ax.set_ylim(bottom=0)
    # Above the plot, beside the title: inside it would hide the band wherever lengths go.
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncol=3, fontsize=8, frameon=False)
    if clipped[0]:
        ax = axes[1][0]
        draw(ax, clipped[0], [100 * v for v in clipped[1]], color="tab:red")
        ax.set_ylim(0, max(5, *[100 * v for v in clipped[1]]) * 1.1)
        ax.set_title("cut off at max_completion_length (no answer can follow)")
        ax.set_ylabel("% of completions")
    axes[-1][0].set_xlabel("training step")
    fig.tight_layout()
    return save(fig, out / "length.png")


def plot_single(rows: list[dict], key: str, title: str, ylabel: str, out_path: Path, color: str) -> Path | None:
    """One metric over steps, or None when the run did not log it."""
    import matplotlib.pyplot as plt

    steps, values = series(rows, key)
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.6))
    draw(ax, steps, values, color=color)
    ax.set_title(title, fontweight="bold")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    return save(fig, out_path)


def step_time_title(rows: list[dict]) -> str:
    times = sorted(series(rows, "step_time")[1])
    if not times:
        return "time per step"
    return f"time per step (median {times[len(times) // 2]:.2f} s, {sum(times) / 60:.1f} min in all)"


def plot_metrics(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """PNGs of the run's metrics.jsonl in ``out_dir``: rewards.png, length.png, kl.png, step_time.png (those logged)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and safe in a training process without one
    metrics_path, out = Path(metrics_path), Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RecipeError(f"{out} is a file: pass --out a folder for the PNGs (it is created if missing)")
    rows = read_steps(metrics_path)
    config = run_config(metrics_path)
    with runs.writing(out, REDRAW, elsewhere=ELSEWHERE):
        out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_rewards(rows, config, out),
        plot_length(rows, config, out),
        plot_single(rows, "kl", "KL divergence from the base model", "KL (per token)", out / "kl.png", "tab:purple"),
        plot_single(rows, "step_time", step_time_title(rows), "seconds", out / "step_time.png", "tab:green"),
    ]
    return [path for path in written if path is not None]


def parse_args(argv: typing.Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a flag cut short is a typo, not a request
    )
    parser.add_argument("metrics", help="metrics.jsonl of a run (in its output.dir)")
    parser.add_argument("--out", help="folder for the PNGs (default: plots/ next to metrics.jsonl)")
    return parser.parse_args(argv)


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    metrics = Path(args.metrics)
    try:
        paths = plot_metrics(metrics, args.out or metrics.parent / "plots")
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
