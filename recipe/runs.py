"""What a run keeps in output.dir, and how a stopped run continues from it.

A checkpoint or adapter folder counts as complete only once its marker file exists: the marker is
written once every other file is (an adapter's model card, which it leaves out, may follow it) and
lists every file with its size, so a save cut off by a kill, or a file truncated
later, is never mistaken for a finished one. Old checkpoints are deleted only after a newer one is
marked, and one process at a time writes into a folder (RunLock). Nothing heavy is imported at
module level.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
from pathlib import Path

from recipe.errors import RecipeError, first_line
from recipe.jsonl import write_atomic

MARKER = "recipe_complete.json"
LOCK = ".run.lock"
# The model card: rewritten after a save (an evaluation adds its scores), so its size is not checked.
CARD = "README.md"
# Suffixes Unsloth's name mapper adds when it swaps a hub id for its own copy
# (Qwen/Qwen2.5-3B -> unsloth/Qwen2.5-3B-unsloth-bnb-4bit); the weights are the same model.
UNSLOTH_SUFFIXES = ("-unsloth-bnb-4bit", "-bnb-4bit")
# What an earlier run leaves behind. plots/ is redrawn by any run; config.yaml is no run's product alone (a user may
# keep theirs there), so refuse_other_config guards it instead.
RUN_OUTPUTS = ("metrics.jsonl", "samples.jsonl", "adapter")
# A checkpoint's files that are training state, not the adapter: left out when a checkpoint becomes adapter/.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "rng_state.pth")


def write_marker(folder: Path, step: int) -> None:
    """Mark ``folder`` complete: every file's size, written atomically."""
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (MARKER, CARD)
    }
    write_atomic(folder / MARKER, json.dumps({"step": step, "files": files}))


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
        if name == CARD:
            continue
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


def check_output_dir(out: Path, label: str = "output.dir") -> None:
    """Fail before any model loads when ``out`` cannot hold a run's outputs; ``label`` is what named it, a config
    key (output.dir) or a flag (--gguf, --merge), for the one line that says so."""
    flag = label.startswith("--")
    named, choose = (f"{label} {out}", f"pass {label}") if flag else (f"{label}={out}", f"set {label} to")
    if out.exists() and not out.is_dir():
        raise RecipeError(f"{named} is a file: {choose} a folder (it is created if missing)")
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RecipeError(f"{named}: {existing} is a file, so the folder cannot be created: {choose} another folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RecipeError(
            f"{named}: {existing} is not writable: choose a folder you can write to, or fix its permissions"
        )


def refuse_earlier_run(out: Path) -> None:
    found = earlier_outputs(out)
    if found:
        raise RecipeError(
            f"output.dir={out} already holds an earlier run ({', '.join(found)}): pass --resume to continue it, "
            "or set output.dir to a new folder"
        )


def refuse_other_config(out: Path, text: str) -> None:
    """Refuse to start a run where ``out`` holds a config.yaml other than ``text``, the one the run writes there:
    the user's own, say, kept there and passed as --config. The run's own, left by a run stopped before its first
    step, is rewritten unchanged."""
    path = out / "config.yaml"
    if not path.exists():
        return
    with contextlib.suppress(OSError):  # a folder or an unreadable file is not the run's own either
        if path.read_bytes() == text.encode():
            return
    raise RecipeError(
        f"output.dir={out} holds a config.yaml other than the one this run writes there: move that file out of the "
        "folder (--config reads it from anywhere), or set output.dir to another folder"
    )


def refuse_unresumable(out: Path) -> None:
    """Refuse to start at step 0 where an earlier run left logs or checkpoints of which none can be resumed:
    the new run would clear its logs (a resume trims them to its step) and train beside its checkpoints."""
    found = earlier_outputs(out)
    if not found:
        return
    problems = [f"{folder.name} {folder_problem(folder)}" for folder in reversed(checkpoints(out))]
    why = "; ".join(problems) if problems else f"{', '.join(found)}; no checkpoint"
    raise RecipeError(
        f"output.dir={out} holds an earlier run with nothing to resume ({why}): "
        f"to start over, delete {out} or set output.dir to a new folder"
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


def adapter_size(out: Path) -> int | None:
    """About what adapter/ takes: its files in the newest checkpoint (all but the training state), or None."""
    saved = checkpoints(out)
    if not saved:
        return None
    return sum(p.stat().st_size for p in saved[-1].rglob("*") if p.is_file() and p.name not in TRAINING_STATE)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def human_size(size: float) -> str:
    """Bytes as people read them: 512 bytes, 1.5 MB, 2.3 GB (decimal units, like df -H)."""
    if size < 1000:
        return f"{size:.0f} bytes"
    exponent = min(3, int(math.log(size, 1000)))
    return f"{size / 1000**exponent:.1f} {('KB', 'MB', 'GB')[exponent - 1]}"


def free_space(path: Path) -> int:
    """Free bytes on the disk that holds ``path`` (or would hold it: its nearest existing folder)."""
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    return shutil.disk_usage(existing if existing.is_dir() else existing.parent).free


# What a failed write of our files raises, as opposed to an OSError of anything else (a socket, a read).
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DENIED_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
WRITE_ERRNOS = (*FULL_ERRNOS, *DENIED_ERRNOS, errno.EIO, errno.EFBIG)
# A full disk in the messages of writers that drop the errno (Rust's io errors end in "(os error 28)").
FULL_SIGNS = ("No space left", "os error 28", "quota exceeded")
# What torch's zip writer (caffe2/serialize/inline_container.cc; read in torch 2.13) raises when a write fails,
# a RuntimeError without the errno: "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598",
# "PytorchStreamWriter failed writing file data/0: file write failed".
TORCH_WRITER_SIGNS = ("PytorchStreamWriter failed", "unexpected pos", "file write failed")


def is_write_error(error: BaseException) -> bool:
    """What the writers raise when a write fails: OSError, safetensors' own error type, and a RuntimeError only
    when its message is torch's writer failing (a CUDA or NCCL error inside a save is not a write failure)."""
    if isinstance(error, OSError) or type(error).__name__ == "SafetensorError":
        return True
    return isinstance(error, RuntimeError) and any(sign in str(error) for sign in (*TORCH_WRITER_SIGNS, *FULL_SIGNS))


def disk_full(error: BaseException) -> bool:
    return getattr(error, "errno", None) in FULL_ERRNOS or any(sign in str(error) for sign in FULL_SIGNS)


def write_denied(error: BaseException) -> bool:
    return getattr(error, "errno", None) in DENIED_ERRNOS


def write_failure(target: Path, error: BaseException, needed: int | None = None) -> str:
    """One phrase for a failed write of ``target``: why, the free space there and about what it needs."""
    free = free_space(target)
    room = f"{human_size(free)} free" + (f", about {human_size(needed)} needed" if needed else "")
    if disk_full(error) or (not write_denied(error) and needed is not None and free < needed):
        return f"could not write {target}: the disk is full ({room})"
    why = getattr(error, "strerror", None) or first_line(error, 160)
    return f"could not write {target} ({type(error).__name__}: {why}; {room})"


def write_advice(error: BaseException, then: str, elsewhere: str = "choose another output.dir") -> str:
    """What to do about a failed write, by its errno, then ``then``: fix the permissions where the write was
    refused (EACCES, EPERM, EROFS), else free space (ENOSPC, EDQUOT, and torch's writer, which drops the errno)."""
    if write_denied(error):
        return f"fix the permissions, then {then}; or {elsewhere}"
    return f"free space, then {then}"


@contextlib.contextmanager
def writing(
    target: Path,
    fix: str,
    needed: int | None = None,
    partial: Path | None = None,
    elsewhere: str = "choose another output.dir",
):
    """A failed write inside the block becomes one RecipeError line: write_failure, then ``fix``, the advice for a
    full disk, or where the write was refused (write_denied) "fix the permissions or ``elsewhere``". ``partial``,
    a half-written folder, is removed first so that it holds no space. Any other error passes through."""
    try:
        yield
    except Exception as error:
        if not is_write_error(error):
            raise
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        advice = f"fix the permissions or {elsewhere}" if write_denied(error) else fix
        raise RecipeError(f"{write_failure(target, error, needed)}: {advice}") from None


def rotate_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and incomplete ones older than those.

    Called once a new checkpoint is marked complete, never before (transformers' own rotation runs
    before our marker: a kill in between left no complete checkpoint). A folder's marker goes first,
    so one whose deletion is cut off is no longer taken for complete.
    """
    complete = [folder for folder in checkpoints(out) if folder_problem(folder) is None]
    if len(complete) <= keep:
        return
    oldest_kept = checkpoint_step(complete[-keep])
    for folder in checkpoints(out):
        if checkpoint_step(folder) < oldest_kept:
            (folder / MARKER).unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)


def complete_checkpoint_saves(trainer, out: Path, keep: int) -> None:
    """Make each of ``trainer``'s checkpoints complete or absent, then keep the newest ``keep``.

    Wraps Trainer._save_checkpoint (TRL gets save_total_limit=None, so it never rotates itself): the
    folder's stale marker goes first, the marker is written once every file is, then rotate_checkpoints.
    A failed write removes the half-written folder and is one line naming it and the space a
    checkpoint needs; the previous checkpoint is untouched.
    """
    save = trainer._save_checkpoint

    def save_complete(model, trial, *args, **kwargs):
        step = trainer.state.global_step
        folder = out / f"checkpoint-{step}"
        main = trainer.is_world_process_zero()
        earlier = [c for c in checkpoints(out) if checkpoint_step(c) < step]
        fix = "free space, then resume with --resume (the previous checkpoint is kept)"
        with writing(folder, fix, folder_size(earlier[-1]) if earlier else None, folder if main else None):
            if main:
                (folder / MARKER).unlink(missing_ok=True)
            save(model, trial, *args, **kwargs)
            if main:
                write_marker(folder, step)
        if main:
            rotate_checkpoints(out, keep)

    trainer._save_checkpoint = save_complete


def model_key(name: str) -> str:
    """What identifies a base model: the absolute path of a local folder, else the hub id without Unsloth's renaming."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    key = name.lower().rsplit("/", 1)[-1]
    for suffix in UNSLOTH_SUFFIXES:
        key = key.removesuffix(suffix)
    return key


def trained_with(checkpoint: Path) -> dict:
    """The config keys a checkpoint's adapter fixes (model.name and the LoRA's shape), from adapter_config.json."""
    try:
        saved = json.loads((checkpoint / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(saved, dict):
        return {}
    found = {
        "model.name": saved.get("base_model_name_or_path"),
        "lora.r": saved.get("r"),
        "lora.alpha": saved.get("lora_alpha"),
        "lora.target_modules": saved.get("target_modules"),
    }
    return {key: value for key, value in found.items() if value is not None}


def as_set_value(value) -> str:
    """``value`` as a --set override writes it; lists sorted in flow style."""
    if isinstance(value, (list, tuple, set)):
        return "[" + ", ".join(sorted(map(str, value))) + "]"
    return str(value)


def check_resumable(checkpoint: Path, cfg) -> None:
    """Refuse, before anything is written, to resume ``checkpoint`` with a config its adapter does not fit."""
    wanted = {
        "model.name": cfg.model.name,
        "lora.r": cfg.lora.r,
        "lora.alpha": cfg.lora.alpha,
        "lora.target_modules": cfg.lora.target_modules,
    }
    same = {
        "model.name": lambda a, b: model_key(str(a)) == model_key(b),
        "lora.target_modules": lambda a, b: as_set_value([a] if isinstance(a, str) else a) == as_set_value(b),
    }
    differing = {
        key: value
        for key, value in trained_with(checkpoint).items()
        if not same.get(key, lambda a, b: a == b)(value, wanted[key])
    }
    if differing:
        theirs = ", ".join(f"{key}={as_set_value(value)}" for key, value in differing.items())
        ours = ", ".join(f"{key}={as_set_value(wanted[key])}" for key in differing)
        sets = " ".join(f"--set {key}={as_set_value(value)}" for key, value in differing.items())
        raise RecipeError(
            f"{checkpoint} was trained with {theirs} where this config has {ours}: resume with the run's values "
            f"({sets}), or set output.dir to a new folder to start a new run"
        )


# Folder (resolved) -> the open lock file of this process; closing it, or the process ending, unlocks.
_LOCKS: dict[str, int] = {}


def lock_output_dir(out: Path, enabled: bool = True) -> None:
    """One process at a time writes into ``out``: an exclusive flock on ``out/.run.lock``, held until this process ends.

    The OS releases a flock with the process however it ends, so a killed run's leftover lock file
    blocks nothing. The file holds the holder's pid, which a refused process names. The process that
    holds it may ask again (main() called twice from Python). ``enabled`` False, for the other
    processes of one launch, takes nothing: the main process holds it for all of them.
    """
    import fcntl

    key = str(out.resolve())
    if not enabled or key in _LOCKS:
        return
    with writing(out / LOCK, "choose another output.dir or free space"):
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise RecipeError(
            f"output.dir={out} is in use by another run (pid {holder if holder.isdigit() else 'unknown'}): wait for it "
            "to end or stop it (kill -TERM saves a checkpoint), then --resume; or set output.dir to another folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _LOCKS[key] = fd


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

    def callback(self):
        from transformers import TrainerCallback

        stop = self

        class StopAndSave(TrainerCallback):
            """Saves and stops after the step a signal arrived in (complete_checkpoint_saves marks the save)."""

            def on_step_end(self, args, state, control, **kwargs):
                if stop.received is not None:
                    control.should_save = True
                    control.should_training_stop = True

        return StopAndSave()
