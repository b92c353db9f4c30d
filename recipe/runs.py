"""What a run keeps in output.dir, and how a stopped run continues from it.

A checkpoint or adapter folder counts as complete only once its marker file exists: the marker is
written last and lists every file with its size, so a save cut off by a kill, or a file truncated
later, is never mistaken for a finished one. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

from recipe.errors import RecipeError, first_line

MARKER = "recipe_complete.json"
# What an earlier run leaves behind; config.yaml and plots/ are rewritten by any run, so they do not count.
RUN_OUTPUTS = ("metrics.jsonl", "samples.jsonl", "adapter")
# A checkpoint's files that are training state, not the adapter: left out when a checkpoint becomes adapter/.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "rng_state.pth")


def write_marker(folder: Path, step: int) -> None:
    """Mark ``folder`` complete: every file's size, written to a temporary name and renamed, so it is atomic."""
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    partial = folder / f"{MARKER}.partial"
    with open(partial, "w") as f:
        json.dump({"step": step, "files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, folder / MARKER)


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete save (one phrase), or None when every file is there, whole."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        files, step = dict(marker["files"]), int(marker["step"])
    except FileNotFoundError:
        return "has no completion marker (its save was cut off)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"has an unreadable {MARKER}"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"lacks {name}"
        if path.stat().st_size != size:
            return f"has {name} of {path.stat().st_size} bytes, not the {size} saved (truncated or overwritten)"
    if "trainer_state.json" in files:
        try:
            if int(json.loads((folder / "trainer_state.json").read_text())["global_step"]) != step:
                return "has a trainer_state.json of another step"
        except (OSError, ValueError, KeyError, TypeError):
            return "has an unreadable trainer_state.json"
    return weights_problem(folder / "adapter_model.safetensors") if "adapter_model.safetensors" in files else None


def weights_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be read (its header is checked, no tensor is loaded), or None."""
    from safetensors import safe_open

    if not path.is_file():
        return f"lacks {path.name}"
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as error:  # safetensors raises its own error types for damaged headers
        return f"has a damaged {path.name} ({first_line(error, 120)})"
    return None


def checkpoint_step(folder: Path) -> int:
    tail = folder.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def checkpoints(out: Path) -> list[Path]:
    """The checkpoint folders of ``out``, oldest first."""
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0]
    return sorted(found, key=checkpoint_step)


def earlier_outputs(out: Path) -> list[str]:
    """Names of what an earlier run left in ``out``."""
    if not out.is_dir():
        return []
    return [name for name in RUN_OUTPUTS if (out / name).exists()] + [p.name for p in checkpoints(out)]


def check_output_dir(out: Path) -> None:
    """Fail before any model loads when ``out`` cannot hold a run's outputs."""
    if out.exists() and not out.is_dir():
        raise RecipeError(f"output.dir={out} is a file: set output.dir to a folder (it is created if missing)")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RecipeError(
            f"output.dir={out}: {existing} is a file, so the folder cannot be created: choose another output.dir"
        )
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RecipeError(
            f"output.dir={out}: {existing} is not writable: choose a folder you can write to, or fix its permissions"
        )


def refuse_earlier_run(out: Path) -> None:
    found = earlier_outputs(out)
    if found:
        raise RecipeError(
            f"output.dir={out} already holds an earlier run ({', '.join(found)}): pass --resume to continue it, "
            "or set output.dir to a new folder"
        )


def latest_complete(out: Path) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint of ``out`` (or None) and a warning for each newer one skipped."""
    warnings = []
    for folder in reversed(checkpoints(out)):
        problem = folder_problem(folder)
        if problem is None:
            return folder, warnings
        warnings.append(f"skipping {folder} : it {problem}")
    return None, warnings


def chosen_checkpoint(out: Path, resume: str) -> tuple[Path | None, list[str]]:
    """The checkpoint that ``output.resume`` (auto or a path) points at, validated, and warnings to print."""
    if resume == "auto":
        return latest_complete(out)
    folder = Path(resume)
    problem = folder_problem(folder)
    if problem is not None:
        raise RecipeError(
            f"output.resume={resume} {problem}: set output.resume=auto to take the newest complete checkpoint"
        )
    return folder, []


def saved_step(folder: Path) -> int:
    return int(json.loads((folder / MARKER).read_text())["step"])


def adapter_complete(out: Path) -> bool:
    return (out / "adapter").is_dir() and folder_problem(out / "adapter") is None


def replace_folder(partial: Path, final: Path) -> None:
    """Move a fully written ``partial`` folder to ``final``; an older ``final`` is removed only afterwards."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


def adapter_from_checkpoint(checkpoint: Path, out: Path) -> Path:
    """adapter/ rebuilt from a checkpoint of the last step: its adapter and tokenizer files, no training state."""
    partial = out / "adapter.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(checkpoint, partial, ignore=shutil.ignore_patterns(*TRAINING_STATE, MARKER))
    write_marker(partial, saved_step(checkpoint))
    replace_folder(partial, out / "adapter")
    return out / "adapter"


def load_trained_adapter(model, checkpoint: Path) -> None:
    """Load the checkpoint's ``default`` (trained) adapter into ``model``.

    With beta > 0 TRL adds a frozen ``ref`` adapter, so PEFT saves ``default`` at the checkpoint's
    top level and ``ref`` in ``ref/``; transformers' Trainer then loads only the sub-folder adapters
    and leaves ``default`` at its fresh random initialisation. Loading it again is harmless otherwise.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights, adapter_name="default")
    if result.unexpected_keys:
        raise RecipeError(
            f"{checkpoint}/adapter_model.safetensors does not fit the model ({len(result.unexpected_keys)} unknown tensors, "
            f"e.g. {result.unexpected_keys[0]}): resume with the config of that run (its output dir holds config.yaml)"
        )


STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class GracefulStop:
    """Turns SIGINT/SIGTERM into "finish this step, save a checkpoint, stop"; a second signal aborts at once."""

    def __init__(self):
        self.received: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        for sig in STOP_SIGNALS:
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False

    def handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt  # the second signal: abandon the step, keep the last checkpoint
        self.received = signum
        print(
            f"\n{signal.Signals(signum).name}: finishing this step and saving a checkpoint (signal again to abort now)",
            flush=True,
        )

    @property
    def exit_code(self) -> int:
        return STOP_SIGNALS.get(self.received, 1)

    def callback(self, out: Path):
        from transformers import TrainerCallback

        stop = self

        class StopAndSave(TrainerCallback):
            """Saves and stops after the step a signal arrived in; marks every saved checkpoint complete."""

            def on_step_end(self, args, state, control, **kwargs):
                if stop.received is not None:
                    control.should_save = True
                    control.should_training_stop = True

            def on_save(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    write_marker(out / f"checkpoint-{state.global_step}", state.global_step)

        return StopAndSave()
