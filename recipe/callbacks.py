"""What a training run shows and logs as it goes: metrics.jsonl, a compact progress bar, samples.jsonl.

The classes derive from transformers' TrainerCallback, imported only when a run builds them, so that
importing this module stays light.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import rewards
from recipe.jsonl import append_jsonl, trim_jsonl

HEALTH_WINDOW = 10


def health_warnings(recent: list[dict]) -> list[str]:
    """Hints when the last HEALTH_WINDOW logged steps show GRPO has nothing to learn from."""
    if len(recent) < HEALTH_WINDOW:
        return []
    found = []
    if all(row.get("completions/clipped_ratio", 0.0) >= 0.9 for row in recent):
        found.append(
            "almost every completion stops at training.max_completion_length, so no answer can follow: raise it (and model.max_seq_length)"
        )
    if all(row.get("frac_reward_zero_std", 0.0) >= 0.99 for row in recent):
        found.append(
            "every completion of a prompt gets the same reward, so GRPO has no advantage to follow: look at samples.jsonl (is the format ever written?)"
        )
    return found


def progress_numbers(logs: dict) -> dict[str, str]:
    """The progress bar's postfix: the total reward, the share of correct answers (correctness scores
    0 or its best, so its mean over its best is that share), completion length and step time."""
    shown = {}
    if (reward := logs.get("reward")) is not None:
        shown["reward"] = f"{reward:.3g}"
    if (correct := logs.get("rewards/correctness/mean")) is not None:
        shown["correct"] = f"{correct / rewards.MAX_REWARD['correctness']:.0%}"
    if (length := logs.get("completions/mean_length")) is not None:
        shown["len"] = f"{length:.0f}"
    if (seconds := logs.get("step_time")) is not None:
        shown["s/step"] = f"{seconds:.3g}"
    return shown


def log_metrics(out: Path, state, logs: dict) -> None:
    """One logged step as a metrics.jsonl line: what plots, the bench and the learning check read."""
    # Milliseconds: the bench times 4-step generation cycles of about 1.5 s from these stamps, and 0.1 s stamps
    # rounded its s/step to 0.025, a sixth of the 3B's floor.
    append_jsonl([{"step": state.global_step, "time": round(time.time(), 3), **logs}], out / "metrics.jsonl")


def make_callbacks(out: Path, sample_log: SampleLog) -> list:
    """The recipe's callbacks for a run writing into ``out``."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        """Every logged step as one JSON line: rewards, lengths, KL, step time; warns once when learning is stuck."""

        def __init__(self):
            self.recent: list[dict] = []
            self.warned: set[str] = set()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                log_metrics(out, state, logs)
                if "reward" in logs:
                    self.recent = [*self.recent, logs][-HEALTH_WINDOW:]
                    for warning in set(health_warnings(self.recent)) - self.warned:
                        self.warned.add(warning)
                        print(f"\nwarning at step {state.global_step}: {warning}", flush=True)

    class ProgressBar(TrainerCallback):
        """One bar with ETA and the numbers that say whether it learns, instead of a dict per step."""

        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="GRPO", dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            # The Trainer logs a step after its on_step_end: redraw now, or the bar shows the step before.
            if self.bar is not None and logs and (shown := progress_numbers(logs)):
                self.bar.set_postfix(shown, refresh=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    class TrimLogs(TrainerCallback):
        """On a resumed run, drop the log lines of steps after its checkpoint: they are trained again."""

        started_at: int | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            # The checkpoint's weights, optimizer and scheduler are loaded by now, so the logs can be trimmed.
            self.started_at = state.global_step
            if state.is_world_process_zero:
                for name in ("metrics.jsonl", "samples.jsonl"):
                    trim_jsonl(out / name, state.global_step)

    return [MetricsLog(), ProgressBar(), TrimLogs(), sample_log.callback()]


class SampleLog:
    """Records what each reward scored on the latest batch and writes it out every ``every`` steps.

    The notebook printed this from inside a reward; here the rewards stay pure and each one is
    wrapped to keep its own scores (under its own name, so TRL logs it as before), never re-run.
    """

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, every
        self.batch: dict = {}
        self.scores: dict[str, list[float]] = {}

    def record(self, fn):
        @functools.wraps(fn)
        def recorded(prompts, completions, **kwargs):
            scores = fn(prompts, completions, **kwargs)
            if completions is not self.batch.get("completions"):
                self.batch = {
                    "completions": completions,
                    "answer": kwargs.get("answer"),
                    "question": kwargs.get("question"),
                }
                self.scores = {}
            self.scores[fn.__name__] = scores
            return scores

        return recorded

    def rows(self, step: int) -> list[dict]:
        texts = [rewards.completion_text(c) for c in self.batch.get("completions") or []]
        answers = self.batch.get("answer") or [None] * len(texts)
        questions = self.batch.get("question") or [None] * len(texts)
        return [
            {
                "step": step,
                "question": q,
                "gold": a,
                "response": text,
                "extracted": rewards.extract_answer(text),
                **{name: scores[i] for name, scores in self.scores.items()},
            }
            for i, (q, a, text) in enumerate(zip(questions, answers, texts))
        ]

    def callback(self):
        from transformers import TrainerCallback

        log = self

        class SampleCallback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if not state.is_world_process_zero or not log.scores or state.global_step % log.every:
                    return
                rows = log.rows(state.global_step)
                append_jsonl(rows, log.path)
                first = rows[0]
                print(
                    f"\n[step {first['step']}] gold={first['gold']} extracted={first['extracted']!r} "
                    f"correctness={first.get('correctness')}\n{first['response'][:600]}\n",
                    flush=True,
                )

        return SampleCallback()
