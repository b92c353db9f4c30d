"""Summarise a learning run into bench/results/latest.json under "learning".

    python bench/learning.py --run outputs/smollm2-learn --eval outputs/smollm2-learn/eval/summary.json \
        --gsm-symbolic outputs/smollm2-learn/eval-gsm-symbolic/summary.json

Reads the run's metrics.jsonl (first vs last 20 reward rows of the total, strict-format and
correctness rewards; with steps_per_generation N, TRL logs rewards every N steps only) and
eval_grpo.py's summaries (held-out accuracy, and on GSM-Symbolic, base vs trained).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"reward": "reward", "strict_format": "rewards/strict_format/mean", "correctness": "rewards/correctness/mean"}


def first_vs_last(rows: list[dict], window: int) -> dict:
    return {
        name: {
            f"first_{window}": round(statistics.mean(r[key] for r in rows[:window]), 4),
            f"last_{window}": round(statistics.mean(r[key] for r in rows[-window:]), 4),
        }
        for name, key in KEYS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the run's output.dir")
    parser.add_argument("--eval", type=Path, help="eval_grpo.py's summary.json for this run")
    parser.add_argument("--gsm-symbolic", type=Path, help="eval_grpo.py's summary.json on GSM-Symbolic")
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args(argv)

    rows = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward" in r]
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    learning = {
        "config": config,
        "steps": max(r["step"] for r in rows if "step" in r),
        "reward_rows": len(steps),
        "minutes": round((steps[-1]["time"] - steps[0]["time"]) / 60, 1),
        "training_rewards": first_vs_last(steps, args.window),
    }
    if args.eval:
        learning["held_out"] = json.loads(args.eval.read_text())
    if args.gsm_symbolic:
        learning["gsm_symbolic"] = json.loads(args.gsm_symbolic.read_text())
    summary = json.loads(args.out.read_text()) if args.out.exists() else {}
    summary["learning"] = learning
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in learning.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
