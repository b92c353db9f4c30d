"""Teach a small base model to reason with GRPO and rule-based rewards (DeepSeek-R1's idea) on one GPU.

    python train_grpo.py --config config.yaml
    python train_grpo.py --config config.yaml --set training.max_steps=500 --set output.dir=runs/short
    python train_grpo.py --config config.yaml --resume        # continue from the latest checkpoint
    python train_grpo.py --config config.yaml --dry-run       # check everything and forecast memory, load no model
    python train_grpo.py --config configs/qwen2.5-14b-4090.yaml --dry-run --card-gib 16   # will it fit a 16 GB card?

Offline on a CPU, with a tiny model and problems this project builds itself (about a minute):

    python offline.py tiny && python train_grpo.py --config configs/tiny-cpu.yaml

The script reads top to bottom: config (typed, validated before anything heavy loads), data
(GSM8K prompts in chat form), model (Unsloth + vLLM on a GPU, or plain transformers + PEFT),
trainer (TRL's GRPOTrainer with the rewards of rewards.py) and main().
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import shutil
import sys
import time
import typing
from pathlib import Path

import plots
import rewards
from recipe import backend as backends
from recipe import distributed, memory, model_card, preflight, runs, tracking
from recipe.callbacks import SampleLog, make_callbacks
from recipe.config import (
    Config,
    add_override_argument,
    check_trainer_names,
    config_changes,
    config_to_yaml,
    load_config,
)
from recipe.data import build_prompts, dropped, load_rows, load_tokenizer, stop_token_ids
from recipe.errors import RecipeError, first_line
from recipe.grpo_config import check_optimizer, grpo_args
from recipe.jsonl import write_atomic

# The card a dry run on a machine without a GPU plans for, unless --card-gib names another: an RTX 4090's.
PLANNED_CARD_GIB = 24.0


def parse_args(argv: typing.Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --resum must not pass for --resume
    )
    parser.add_argument("--config", help="YAML config (defaults: the dataclasses of recipe/config.py)")
    add_override_argument(parser, "training.max_steps=500")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in output.dir (output.resume=auto, except that with "
        "nothing to resume it stops instead of starting at step 0)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the config and data and forecast GPU memory without loading the model; runs on a CPU too",
    )
    parser.add_argument(
        "--card-gib",
        type=float,
        metavar="GIB",
        help=f"forecast GPU memory for a card of this size instead of the GPU present (a dry run without a GPU plans for {PLANNED_CARD_GIB:g})",
    )
    return parser.parse_args(argv)


def resolve_resume(cfg: Config, asked: bool = False) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume from (None: start at step 0) and warnings; refuses to overwrite an earlier run,
    and to start a new one when ``asked`` (--resume) to continue one."""
    out = Path(cfg.output.dir)
    if cfg.output.resume == "never":
        runs.refuse_earlier_run(out)
        runs.refuse_other_config(out, config_to_yaml(cfg))
        return None, []
    checkpoint, warnings = runs.chosen_checkpoint(out, cfg.output.resume)
    if checkpoint is not None:
        runs.check_resumable(checkpoint, cfg)
        return checkpoint, warnings
    if runs.adapter_complete(out):  # a finished run: finished_run says so
        return None, warnings
    runs.refuse_unresumable(out)
    if asked:
        raise RecipeError(
            f"--resume: nothing to resume in output.dir={out} (no checkpoint or log): check output.dir, "
            "or leave out --resume to start a new run"
        )
    runs.refuse_other_config(out, config_to_yaml(cfg))
    return None, [*warnings, f"nothing to resume in {out}: starting at step 0"]


def resume_command(argv: typing.Sequence[str] | None) -> str:
    """The command line that continues this run: the same words plus --resume."""
    words = list(sys.argv[1:] if argv is None else argv)
    script = sys.argv[0] if Path(sys.argv[0]).name == "train_grpo.py" else "train_grpo.py"
    return "python " + shlex.join([script, *words, *([] if "--resume" in words else ["--resume"])])


def plans_for_a_gpu(cfg: Config, args: argparse.Namespace) -> bool:
    """A dry run without CUDA checks a GPU config as it would run on a GPU, instead of refusing it here."""
    import torch

    if not args.dry_run or torch.cuda.is_available():
        return False
    if args.card_gib is not None:
        return True
    try:
        backends.resolve_backend(cfg, cuda=False)
    except RecipeError:
        return True  # what a CPU cannot train is planned as on a GPU, where any other error stands again
    return False


@dataclasses.dataclass
class Prepared:
    """What main() knows once everything is checked and built, before a model loads."""

    world: int
    backend: str
    resume_from: Path | None
    warnings: list[str]
    tokenizer: typing.Any
    dataset: typing.Any
    stats: dict
    grpo_config: typing.Any


def prepare(cfg: Config, card_gib: float | None, planning: bool, resume_asked: bool = False) -> Prepared:
    """Everything checked and built before a model loads: the backend, the resume point, the memory
    forecast, tokenizer and data. ``planning``: a dry run on a CPU for a GPU card of ``card_gib``;
    ``resume_asked``: --resume was passed."""
    world = distributed.world_size()
    backend = backends.resolve_backend(cfg, world, cuda=True if planning else None)
    if not planning:  # a dry run in one process plans for a launch of any size
        distributed.check_vllm_split(cfg, world)
    runs.check_output_dir(Path(cfg.output.dir))
    preflight.check_model_folder(cfg)
    resume_from, warnings = resolve_resume(cfg, resume_asked)
    if backend == "unsloth" and not planning:
        backends.import_unsloth(cfg.model, training=True)
    check_trainer_names(cfg.training)
    # After Unsloth's import (it sets the CUDA allocator's options, which CUDA's first use fixes) and
    # before the tokenizer, data and model load, so it shows even when the hub is unreachable.
    for line in memory.forecast_here(cfg, card_gib):
        say(f"memory {line}")
    if note := preflight.check_hub(cfg, cfg.data.dataset):
        say(note)
    tokenizer = load_tokenizer(cfg.model.name)
    dataset, stats = build_prompts(load_rows(cfg.data), tokenizer, cfg.data)
    preflight.check_enough_prompts(cfg, stats["kept"])
    grpo_config = grpo_args(cfg, backend, stop_token_ids(tokenizer), world)
    if not planning:  # a plan for a GPU may name an optimizer that machine has and this one lacks
        check_optimizer(grpo_config)
    return Prepared(world, backend, resume_from, warnings, tokenizer, dataset, stats, grpo_config)


def planned_steps(cfg: Config, n_prompts: int) -> tuple[int, float]:
    per_epoch = math.ceil(n_prompts / cfg.training.prompts_per_step)
    if cfg.training.max_steps > 0:
        return cfg.training.max_steps, cfg.training.max_steps / per_epoch
    return math.ceil(per_epoch * cfg.training.num_train_epochs), cfg.training.num_train_epochs


def finished_run(cfg: Config, resume_from: Path | None, steps: int) -> str | None:
    """What to print when resuming a run that has nothing left to train, or None.

    Nothing is written, except adapter/ when the run was killed while saving it: it is rebuilt from
    the checkpoint of the last step, which holds the same trained adapter.
    """
    out = Path(cfg.output.dir)
    if cfg.output.resume == "never":
        return None
    if runs.adapter_complete(out):
        return f"{out} holds a finished run (adapter/ saved at step {runs.saved_step(out / 'adapter')}): nothing to train; evaluate it with eval_grpo.py, or train more into a new output.dir"
    if resume_from is None or runs.saved_step(resume_from) < steps:
        return None
    adapter_from_checkpoint(resume_from, out)
    return f"{resume_from} is at step {runs.saved_step(resume_from)} of the {steps} planned: the run is finished; adapter/ rebuilt from it"


def say(message: str, file: typing.TextIO | None = None) -> None:
    """print on the main process only, so N processes print the plan once."""
    if distributed.is_main_process():
        print(message, file=file or sys.stdout, flush=True)


def banner(cfg: Config, p: Prepared, steps: int, epochs: float) -> list[str]:
    """The lines a user reads before the run starts: model, data, plan, how a step splits, where logs go."""
    t, stats = cfg.training, p.stats
    v = cfg.vllm
    if not cfg.model.fast_inference:
        vllm = "off"
    elif v.mode == "server":
        vllm = f"server at {v.server_host}:{v.server_port}"
    else:
        vllm = "colocate" + (f", tensor parallel {v.tensor_parallel_size}" if v.tensor_parallel_size > 1 else "")
        if backends.folds_rollouts(cfg, p.backend):
            vllm += f", rollouts from the adapter folded into its weights ({backends.FOLD_SWITCH}=0 turns it off)"
    bits = "4-bit" if cfg.model.load_in_4bit else "16-bit"
    processes = f"{p.world} process{'es' if p.world > 1 else ''}"
    return [
        f"model {cfg.model.name} | backend {backends.describe_backend(cfg, p.backend, p.world)} | {bits} LoRA r={cfg.lora.r} | vLLM {vllm}",
        f"data {cfg.data.dataset}: {stats['kept']} prompts kept of {stats['rows']} ({dropped(stats, cfg.data.max_prompt_length)}; longest {stats['longest_prompt_tokens']})",
        f"plan {steps} steps x {t.prompts_per_step} prompt(s) x {t.num_generations} completions = {epochs:.2f} epochs; rewards {', '.join(f'{k}x{v:g}' for k, v in cfg.rewards.items())}",
        f"split {processes} x {p.grpo_config.per_device_train_batch_size} completions each = {t.prompts_per_step} prompt(s) x {t.num_generations} completions a step",
        f"tracking {tracking.where(cfg.output.report_to, Path(cfg.output.dir))}",
    ]


def config_lines(cfg: Config) -> list[str]:
    """The resolved config, one line per section: the whole of it, short enough to read."""
    import yaml

    return [
        f"  {section}: {yaml.safe_dump(values, default_flow_style=True, sort_keys=False, width=math.inf).strip()}"
        for section, values in dataclasses.asdict(cfg).items()
    ]


def load_model(cfg: Config, backend: str, tokenizer):
    try:
        return backends.load_model(cfg, backend, tokenizer)
    except backends.LOAD_ERRORS as error:
        raise RecipeError(backends.load_failure(cfg, error)) from None


def trainable_parameters(model) -> int:
    # Only the trainable count: a 4-bit model packs two weights per stored element, so totals mislead.
    # Under ZeRO-3 a parameter holds only this process's shard; ds_numel is its full size.
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


def build_trainer(cfg: Config, backend: str, model, tokenizer, dataset, args, callbacks: typing.Sequence = ()):
    """GRPOTrainer with the recipe's rewards and callbacks; ``callbacks`` are extra TrainerCallbacks, e.g. a test's."""
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOTrainer

    out = Path(cfg.output.dir)
    sample_log = SampleLog(out / "samples.jsonl", cfg.output.sample_every)
    reward_funcs = [sample_log.record(rewards.REWARDS[name]) for name in cfg.rewards]
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=args, train_dataset=dataset
    )
    trainer.remove_callback(ProgressCallback)
    if cfg.training.cuda_graphs:
        from recipe import graphed_step

        why = graphed_step.install(trainer, backend == "unsloth", cfg.model.load_in_4bit)
        print(f"training step: TRL's own ({why})" if why else f"training step: {graphed_step.describe(trainer)}")
        if why is None:
            from recipe import graphed_scoring

            why = graphed_scoring.install(trainer)
            said = f"the trainer's own ({why})" if why else graphed_scoring.describe(trainer)
            print(f"old and reference log-probs: {said}")
    # TRL writes a boilerplate card into output.dir at every checkpoint ("fine-tuned version of [None]");
    # adapter/ gets the recipe's own (recipe/model_card.py).
    trainer.create_model_card = lambda *args, **kwargs: None
    for callback in [*make_callbacks(out, sample_log), *callbacks]:
        trainer.add_callback(callback)
    load_checkpoint = trainer._load_from_checkpoint

    def load_checkpoint_and_trained_adapter(resume_from_checkpoint, model=None):
        load_checkpoint(resume_from_checkpoint, model)
        runs.load_trained_adapter(trainer.model, Path(resume_from_checkpoint))

    # transformers' Trainer skips the trained adapter when TRL's ref adapter sits beside it: runs.load_trained_adapter.
    trainer._load_from_checkpoint = load_checkpoint_and_trained_adapter
    runs.complete_checkpoint_saves(trainer, out, cfg.output.save_total_limit)
    if backend == "trl" and backends.keep_base_weights_exact(trainer):
        say(
            "sync LoRA merged into vLLM's weights aside: the frozen bf16 base stays exact (TRL merges in place: trl#6688)"
        )
    return trainer


def train(cfg: Config, trainer, resume_from: Path | None, stop: runs.GracefulStop) -> None:
    """trainer.train, with the failures of resuming a damaged checkpoint or a full disk as one line."""
    trainer.add_callback(stop.callback())
    callbacks = trainer.callback_handler.callbacks
    try:
        try:
            trainer.train(resume_from_checkpoint=None if resume_from is None else str(resume_from))
        finally:
            # An exception leaves the progress bar mid-line: end it, so that what is printed next (the
            # one-line error, the resume command) starts a line of its own.
            for callback in callbacks:
                if getattr(callback, "bar", None) is not None:
                    callback.bar.close()
    except (OSError, RuntimeError, ValueError, KeyError, EOFError) as error:
        if isinstance(error, OSError) and error.errno in runs.WRITE_ERRNOS:  # the logs: checkpoints say it themselves
            raise RecipeError(
                f"{runs.write_failure(Path(cfg.output.dir), error)}: {runs.write_advice(error, 'resume with --resume')}"
            ) from None
        # Failing before the first step of a resumed run means the checkpoint did not load.
        if resume_from is None or any(getattr(c, "started_at", None) is not None for c in callbacks):
            raise
        raise RecipeError(
            f"could not load {resume_from} ({type(error).__name__}: {first_line(error, 160)}): delete it to resume from the checkpoint before"
        ) from None


def save_adapter(trainer, out: Path) -> Path:
    """adapter/, written beside it first and moved into place once complete, so a kill never leaves half of one.
    save_model writes the trainer's processing class, the tokenizer, beside the adapter's weights."""
    partial = out / "adapter.partial"
    main = trainer.is_world_process_zero()
    fix = "free space, then rerun with --resume to save it from the last checkpoint"
    with runs.writing(out / "adapter", fix, runs.adapter_size(out), partial if main else None):
        # Every process calls save_model: under ZeRO-3 each holds a shard to gather; only the main one writes.
        trainer.save_model(str(partial))
        if main:
            finish_adapter(partial, out, trainer.state.global_step)
    return out / "adapter"


def adapter_from_checkpoint(checkpoint: Path, out: Path) -> Path:
    """adapter/ rebuilt from a checkpoint of the last step: its adapter and tokenizer files, no training state,
    finished as the end of a run finishes it."""
    partial = out / "adapter.partial"
    shutil.rmtree(partial, ignore_errors=True)
    ignore = shutil.ignore_patterns(*runs.TRAINING_STATE, runs.MARKER)
    needed = runs.folder_size(checkpoint)
    with runs.writing(out / "adapter", "free space, then run the same command again", needed, partial):
        shutil.copytree(checkpoint, partial, ignore=ignore)
        finish_adapter(partial, out, runs.saved_step(checkpoint))
    return out / "adapter"


def finish_adapter(partial: Path, out: Path, step: int) -> None:
    """The completion marker (it leaves the card out), the recipe's model card over PEFT's template one,
    which reads the adapter's step from the marker, then the folder into place."""
    runs.write_marker(partial, step)
    model_card.write_card(partial, out)
    runs.replace_folder(partial, out / "adapter")


def plot_curves(out: Path) -> list[Path]:
    """PNGs of metrics.jsonl, best effort: the adapter and logs are saved, so nothing here may fail the run."""
    try:
        return plots.plot_metrics(out / "metrics.jsonl", out / "plots")
    except Exception as error:  # matplotlib raises many types; a missing plot is only a warning
        print(
            f"warning: no plots ({type(error).__name__}: {error}); redraw with python plots.py {out / 'metrics.jsonl'}",
            file=sys.stderr,
        )
        return []


def save_config(cfg: Config, resume_from: Path | None, changes: list[str]) -> None:
    """config.yaml: this leg's resolved config, which the model card, plots and eval_grpo.py read. Before a resume
    with ``changes`` (config_changes) replaces it, the earlier one is kept as config-until-<step>.yaml."""
    out = Path(cfg.output.dir)
    path = out / "config.yaml"
    if resume_from is not None and path.exists():
        if not changes:
            return  # the same settings: the file stays as it is, a user's comments included
        earlier = out / f"config-until-{runs.saved_step(resume_from)}.yaml"
        # One there already holds the settings up to that step: the leg since then saved no checkpoint after it.
        if not earlier.exists():
            os.replace(path, earlier)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, config_to_yaml(cfg))


def train_and_save(cfg: Config, p: Prepared, steps: int, argv, callbacks=()) -> int:
    out = Path(cfg.output.dir)
    main_process = distributed.is_main_process()
    changes = config_changes(out / "config.yaml", cfg) if main_process and p.resume_from is not None else []
    if main_process:
        with runs.writing(out / "config.yaml", "choose another output.dir or free space"):
            save_config(cfg, p.resume_from, changes)
    tracking.keep_logs_in(cfg.output.report_to, out)
    if p.resume_from is not None:
        step = runs.saved_step(p.resume_from)
        say(f"resuming from {p.resume_from} (step {step})")
        if changes:
            shown = ", ".join(changes[:4]) + (f" and {len(changes) - 4} more" if len(changes) > 4 else "")
            say(
                f"resuming from step {step} with other settings: {shown}; config.yaml now holds them, "
                f"config-until-{step}.yaml the settings that trained up to step {step}"
            )

    started = time.time()
    model, tokenizer = load_model(cfg, p.backend, p.tokenizer)
    say(f"loaded in {time.time() - started:.0f}s: {trainable_parameters(model):,} trainable parameters")
    say("note: GRPO's loss starts near 0 and stays small; watch the reward and correctness instead")
    trainer = build_trainer(cfg, p.backend, model, tokenizer, p.dataset, p.grpo_config, callbacks)
    # The trl backend starts its vLLM engine here, Unsloth's inside load_model: this line is the same
    # moment on both, so their start-up times compare.
    say(f"ready to train in {time.time() - started:.0f}s")
    if p.world > 1 and p.grpo_config.device.type == "cpu":
        distributed.accept_indexed_cpu_locations()
    with runs.GracefulStop() as stop:
        train(cfg, trainer, p.resume_from, stop)
        step = trainer.state.global_step
        if stop.received is not None and step < steps:
            say(
                f"stopped at step {step} of {steps}: checkpoint-{step} saved; continue with: {resume_command(argv)}",
                file=sys.stderr,
            )
            return stop.exit_code
        adapter = save_adapter(trainer, out)
    if main_process:
        plot_curves(out)
    say(
        f"done in {(time.time() - started) / 60:.1f} min: adapter in {adapter}, metrics in {out / 'metrics.jsonl'}, samples in {out / 'samples.jsonl'}, plots in {out / 'plots'}"
    )
    return 0


NOTHING_WRITTEN = "stopped before training started; nothing was written to output.dir"


def stopped_at_once(out: Path, argv: typing.Sequence[str] | None) -> str:
    """The line for a Ctrl-C that stopped the run at once (while loading, or a second one while training): what
    ``out`` keeps, by what is there, and the command that goes on from it."""
    kept = runs.latest_complete(out)[0]
    if kept is not None:
        return f"stopped at once; {kept} is the newest complete checkpoint: continue with: {resume_command(argv)}"
    # A finished run, stopped while it was checked, needs no checkpoint: the same command says it is finished.
    if runs.earlier_outputs(out) and not runs.adapter_complete(out):
        return (
            "stopped before any checkpoint was saved, so there is nothing to resume: "
            f"to start over, delete {out} or set output.dir to a new folder"
        )
    return "stopped before this run trained a step: run the same command again"


def main(argv: typing.Sequence[str] | None = None, callbacks: typing.Sequence = ()) -> int:
    """The command line; ``callbacks`` (TrainerCallbacks) join the recipe's own when main is called from Python."""
    args = parse_args(argv)
    backends.quiet_hub()
    locking = False
    try:
        cfg = load_config(args.config, [*args.overrides, *(["output.resume=auto"] if args.resume else [])])
        if args.card_gib is not None and not (math.isfinite(args.card_gib) and args.card_gib > 0):
            raise RecipeError(f"--card-gib {args.card_gib:g}: give the card's memory in GiB, e.g. --card-gib 24")
        tracking.check_installed(cfg.output.report_to)
        planning = plans_for_a_gpu(cfg, args)
        card_gib = PLANNED_CARD_GIB if planning and args.card_gib is None else args.card_gib
        prepared = prepare(cfg, card_gib, planning, args.resume)
        if not args.dry_run:
            # From here on no other process writes into output.dir: decide where to resume again, under the lock.
            locking = True
            runs.lock_output_dir(Path(cfg.output.dir), distributed.is_main_process())
            prepared.resume_from, prepared.warnings = resolve_resume(cfg, args.resume)
        steps, epochs = planned_steps(cfg, prepared.stats["kept"])
        for warning in prepared.warnings:
            say(f"warning: {warning}", file=sys.stderr)
        done = None if args.dry_run else finished_run(cfg, prepared.resume_from, steps)
    except RecipeError as error:
        say(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Imports and data take a while; until the lock file, nothing is written to output.dir.
        stopped = stopped_at_once(Path(cfg.output.dir), argv) if locking else NOTHING_WRITTEN
        say(f"\n{stopped}", file=sys.stderr)
        return 130
    if done is not None:
        say(done)
        return 0

    for line in banner(cfg, prepared, steps, epochs):
        say(line)
    saved = "dry run: not saved" if args.dry_run else f"saved to {Path(cfg.output.dir) / 'config.yaml'}"
    say("\n".join([f"config ({saved}):", *config_lines(cfg)]))
    if args.dry_run:
        where = f"a {card_gib:g} GiB GPU (none here)" if planning else "this machine"
        say(f"dry run: config, data and memory checked for {where}; no model loaded, nothing written")
        return 0

    try:
        return train_and_save(cfg, prepared, steps, argv, callbacks)
    except RecipeError as error:
        say(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say(f"\n{stopped_at_once(Path(cfg.output.dir), argv)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
