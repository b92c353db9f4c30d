"""Teach a small base model to reason with GRPO and rule-based rewards (DeepSeek-R1's idea) on one GPU.

    python train_grpo.py --config config.yaml
    python train_grpo.py --config config.yaml --set training.max_steps=500 --set output.dir=runs/short
    python train_grpo.py --config config.yaml --resume        # continue from the latest checkpoint
    python train_grpo.py --config config.yaml --dry-run       # validate, build the data, load no model
    python train_grpo.py --config configs/qwen2.5-14b-4090.yaml --dry-run --card-gib 24   # will it fit a 24 GB card?

Offline on a CPU, with a tiny model and problems this project builds itself (about a minute):

    python offline.py tiny && python train_grpo.py --config configs/tiny-cpu.yaml

The script reads top to bottom: config (typed, validated before anything heavy loads), data
(GSM8K prompts in chat form), model (Unsloth + vLLM on a GPU, or plain transformers + PEFT),
trainer (TRL's GRPOTrainer with the rewards of rewards.py) and main().
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import errno
import functools
import math
import shlex
import sys
import time
import typing
from pathlib import Path

import plots
import rewards
from recipe import backend as backends
from recipe import distributed, memory, preflight, runs, tracking
from recipe.config import Config, OutputConfig, TrainingConfig, add_override_argument, config_to_yaml, load_config
from recipe.data import build_prompts, load_rows, load_tokenizer, stop_token_ids
from recipe.errors import RecipeError, first_line
from recipe.jsonl import append_jsonl, trim_jsonl


def resolve_resume(cfg: Config) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume from (None: start at step 0) and warnings; refuses to overwrite an earlier run."""
    out = Path(cfg.output.dir)
    if cfg.output.resume == "never":
        runs.refuse_earlier_run(out)
        return None, []
    return runs.chosen_checkpoint(out, cfg.output.resume)


def resume_command(argv: typing.Sequence[str] | None) -> str:
    """The command line that continues this run: the same words plus --resume."""
    words = list(sys.argv[1:] if argv is None else argv)
    script = sys.argv[0] if Path(sys.argv[0]).name == "train_grpo.py" else "train_grpo.py"
    return "python " + shlex.join([script, *words, *([] if "--resume" in words else ["--resume"])])


def grpo_args(cfg: Config, backend: str, stop_ids: list[int], world: int | None = None):
    """TRL's GRPOConfig from ours plus training.trl, for ``world`` processes (default: the launcher's).

    Built before the model loads: under DeepSpeed ZeRO-3 it is what makes from_pretrained shard the weights.
    """
    import torch

    t, o, v = cfg.training, cfg.output, cfg.vllm
    world = distributed.world_size() if world is None else world
    cuda = torch.cuda.is_available()
    kwargs = dict(
        output_dir=o.dir,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        # prompts_per_step is the whole run's, so one YAML trains the same recipe on 1 or 8 GPUs.
        per_device_train_batch_size=distributed.per_device_batch(cfg, world),
        gradient_accumulation_steps=1,
        steps_per_generation=t.steps_per_generation,
        num_generations=t.num_generations,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        beta=t.beta,
        loss_type=t.loss_type,
        learning_rate=t.learning_rate,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler_type,
        optim=t.optim,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        reward_weights=list(cfg.rewards.values()),
        use_vllm=cfg.model.fast_inference,
        # vLLM stops only at EOS by default; a base model ends its chat turn with <|im_end|> instead.
        generation_kwargs={"stop_token_ids": stop_ids} if cfg.model.fast_inference else None,
        vllm_mode=v.mode,
        vllm_tensor_parallel_size=v.tensor_parallel_size,
        vllm_server_host=v.server_host,
        vllm_server_port=v.server_port,
        # Unsloth builds its own engine from model.gpu_memory_utilization; TRL's needs it as a share of the card.
        vllm_gpu_memory_utilization=backends.vllm_card_fraction(cfg.model.gpu_memory_utilization)
        if backend == "trl"
        else cfg.model.gpu_memory_utilization,
        # Else TRL's own vLLM reserves KV cache for the model's whole context (32k tokens for Qwen2.5);
        # Unsloth builds its engine with max_seq_length itself.
        vllm_max_model_length=cfg.model.max_seq_length if backend == "trl" else None,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        # Unsloth applies its own checkpointing through get_peft_model.
        gradient_checkpointing=backend == "trl" and cfg.lora.gradient_checkpointing is not False,
        logging_steps=o.logging_steps,
        save_steps=o.save_steps,
        save_total_limit=o.save_total_limit,
        report_to=tracking.trackers(o.report_to) or "none",
        # Named after the output folder, so runs tell apart in W&B and trackio.
        run_name=Path(o.dir).name,
        # trackio otherwise publishes a static Space to the Hub after training; logging stays local.
        trackio_static_space_id=False,
        log_completions=False,
    )
    args = with_trl_keys(kwargs, t.trl)
    if args.world_size != world:
        raise RecipeError(
            f"WORLD_SIZE says {world} processes but accelerate sees {args.world_size}: launch with torchrun or accelerate launch, not a mix"
        )
    return args


# GRPOConfig fields set from a recipe key of another name; same-named ones are found in TrainingConfig and OutputConfig.
RECIPE_KEYS = {
    "output_dir": "output.dir",
    "per_device_train_batch_size": "training.prompts_per_step",
    "warmup_steps": "training.warmup_ratio",
    "reward_weights": "rewards",
    "use_vllm": "model.fast_inference",
    "vllm_gpu_memory_utilization": "model.gpu_memory_utilization",
    "gradient_checkpointing": "lora.gradient_checkpointing",
    "vllm_mode": "vllm.mode",
    "vllm_tensor_parallel_size": "vllm.tensor_parallel_size",
    "vllm_server_host": "vllm.server_host",
    "vllm_server_port": "vllm.server_port",
    "vllm_max_model_length": "model.max_seq_length",
}


def recipe_key(field_name: str) -> str | None:
    """The recipe key that sets a GRPOConfig field, or None when the recipe fixes it itself."""
    for section, cls in (("training", TrainingConfig), ("output", OutputConfig)):
        if field_name in {f.name for f in dataclasses.fields(cls)}:
            return f"{section}.{field_name}"
    return RECIPE_KEYS.get(field_name)


def with_trl_keys(kwargs: dict, trl: dict):
    """GRPOConfig(**kwargs, **trl); a trl key the recipe sets, an unknown one or a value TRL rejects is a RecipeError.

    One place for TRL's other knobs, so the recipe need not mirror all of GRPOConfig, and two places never
    set one value.
    """
    from trl import GRPOConfig

    fields = [f.name for f in dataclasses.fields(GRPOConfig) if f.init]
    for key in trl:
        if key in kwargs:
            ours = recipe_key(key)
            fix = f"set {ours} instead" if ours else f"the recipe sets it ({kwargs[key]!r}); remove it"
            raise RecipeError(f"training.trl.{key}: {fix}")
        if key not in fields:
            match = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean 'training.trl.{match[0]}'?" if match else "use a field of trl.GRPOConfig"
            raise RecipeError(f"training.trl.{key} is not a GRPOConfig field: {hint}")
    try:
        return GRPOConfig(**kwargs, **trl)
    except (ValueError, TypeError) as error:
        if not trl:
            raise
        together = error
    GRPOConfig(**kwargs)  # raises as before when the recipe's own values are the problem
    # TRL names fields, not our keys: build again one key at a time to name the one it refuses.
    for key, value in trl.items():
        try:
            GRPOConfig(**kwargs, **{key: value})
        except (ValueError, TypeError) as error:
            raise RecipeError(f"training.trl.{key}={value!r}: {one_line(error)}") from None
    raise RecipeError(f"training.trl: GRPOConfig refuses {', '.join(trl)} together: {one_line(together)}")


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def trainable_parameters(model) -> int:
    # Only the trainable count: a 4-bit model packs two weights per stored element, so totals mislead.
    # Under ZeRO-3 a parameter holds only this process's shard; ds_numel is its full size.
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


def memory_forecast(cfg: Config, card_gib: float | None) -> list[str]:
    """The predicted peak GPU memory, on the GPU present or on a card of ``card_gib`` (``--card-gib``)."""
    import torch

    free_gib = None
    if torch.cuda.is_available():
        free, total = (b / 2**30 for b in torch.cuda.mem_get_info())
        # Planning for a smaller card than this one: it cannot have more free than its size allows.
        free_gib = free if card_gib is None else min(free, card_gib - memory.CUDA_CONTEXT_GIB)
        card_gib = total if card_gib is None else card_gib
        where = f"{torch.cuda.get_device_name(0)} {total:.1f} GiB, {free:.1f} free"
    elif card_gib is None:
        return ["CPU only: no GPU memory forecast (pass --card-gib 24 to forecast a 24 GiB card)"]
    else:
        where = f"a {card_gib:g} GiB card (--card-gib; no GPU here)"
    result = memory.forecast(cfg, memory.model_shape(cfg.model.name), card_gib, free_gib=free_gib)
    return [f"for {where}", *result.lines()]


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


def make_callbacks(cfg: Config, sample_log: SampleLog):
    """Training callbacks: metrics JSONL, a compact progress bar and the samples log."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    out = Path(cfg.output.dir)

    class MetricsLog(TrainerCallback):
        """Every logged step as one JSON line: rewards, lengths, KL, step time; warns once when learning is stuck."""

        def __init__(self):
            self.recent: list[dict] = []
            self.warned: set[str] = set()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                append_jsonl(
                    [{"step": state.global_step, "time": round(time.time(), 1), **logs}], out / "metrics.jsonl"
                )
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
            if self.bar is not None and logs:
                shown = {
                    "reward": logs.get("reward"),
                    "correct": logs.get("rewards/correctness/mean"),
                    "len": logs.get("completions/mean_length"),
                    "s/step": logs.get("step_time"),
                }
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items() if v is not None}, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return [MetricsLog(), ProgressBar(), sample_log.callback()]


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


def build_trainer(cfg: Config, backend: str, model, tokenizer, dataset, args, callbacks: typing.Sequence = ()):
    """GRPOTrainer with the recipe's rewards and callbacks; ``callbacks`` are extra TrainerCallbacks, e.g. a test's."""
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOTrainer

    sample_log = SampleLog(Path(cfg.output.dir) / "samples.jsonl", cfg.output.sample_every)
    reward_funcs = [sample_log.record(rewards.REWARDS[name]) for name in cfg.rewards]
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=args, train_dataset=dataset
    )
    trainer.remove_callback(ProgressCallback)
    for callback in [*make_callbacks(cfg, sample_log), *callbacks]:
        trainer.add_callback(callback)
    load_checkpoint = trainer._load_from_checkpoint

    def load_checkpoint_and_trained_adapter(resume_from_checkpoint, model=None):
        load_checkpoint(resume_from_checkpoint, model)
        runs.load_trained_adapter(trainer.model, Path(resume_from_checkpoint))

    # transformers' Trainer skips the trained adapter when TRL's ref adapter sits beside it: runs.load_trained_adapter.
    trainer._load_from_checkpoint = load_checkpoint_and_trained_adapter
    if backend == "trl" and backends.keep_base_weights_exact(trainer):
        say(
            "sync LoRA merged into vLLM's weights aside: the frozen bf16 base stays exact (TRL merges in place: trl#6688)"
        )
    return trainer


def planned_steps(cfg: Config, n_prompts: int) -> tuple[int, float]:
    per_epoch = math.ceil(n_prompts / cfg.training.prompts_per_step)
    if cfg.training.max_steps > 0:
        return cfg.training.max_steps, cfg.training.max_steps / per_epoch
    return math.ceil(per_epoch * cfg.training.num_train_epochs), cfg.training.num_train_epochs


def save_adapter(trainer, tokenizer, out: Path) -> Path:
    """adapter/, written beside it first and moved into place once complete, so a kill never leaves half of one."""
    partial = out / "adapter.partial"
    # Every process calls save_model: under ZeRO-3 each holds a shard to gather; only the main one writes.
    trainer.save_model(str(partial))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(partial))
        runs.write_marker(partial, trainer.state.global_step)
        runs.replace_folder(partial, out / "adapter")
    return out / "adapter"


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


def planning_for_a_gpu(args: argparse.Namespace) -> bool:
    """A dry run with --card-gib on a machine without CUDA checks the config as it would run on that card."""
    import torch

    return args.dry_run and args.card_gib is not None and not torch.cuda.is_available()


def planned_backend(cfg: Config) -> str:
    return "unsloth" if cfg.model.backend == "auto" else cfg.model.backend


def parse_args(argv: typing.Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML config (defaults: the dataclasses of recipe/config.py)")
    add_override_argument(parser, "training.max_steps=500")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in output.dir (same as output.resume=auto)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the config, build the dataset and print the plan without loading the model",
    )
    parser.add_argument(
        "--card-gib",
        type=float,
        metavar="GIB",
        help="forecast GPU memory for a card of this size (e.g. 24) instead of the GPU present; with --dry-run it works on a CPU",
    )
    return parser.parse_args(argv)


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
    runs.adapter_from_checkpoint(resume_from, out)
    return f"{resume_from} is at step {runs.saved_step(resume_from)} of the {steps} planned: the run is finished; adapter/ rebuilt from it"


def prepare(cfg: Config, card_gib: float | None, planning: bool):
    """Everything checked and built before a model loads: the backend, the resume point, the memory
    forecast, tokenizer and data. ``planning``: a CPU dry run for a card of ``card_gib``."""
    world = distributed.world_size()
    per_device = distributed.per_device_batch(cfg, world)
    backend = planned_backend(cfg) if planning else backends.resolve_backend(cfg, world)
    runs.check_output_dir(Path(cfg.output.dir))
    preflight.check_model_folder(cfg)
    resume_from, warnings = resolve_resume(cfg)
    if backend == "unsloth" and not planning:
        backends.import_unsloth(cfg.model)
    # After Unsloth's import (it sets the CUDA allocator's options, which CUDA's first use fixes) and
    # before the tokenizer, data and model load, so it shows even when the hub is unreachable.
    for line in memory_forecast(cfg, card_gib):
        say(f"memory {line}")
    if note := preflight.check_hub(cfg, cfg.data.dataset):
        say(note)
    tokenizer = load_tokenizer(cfg.model.name)
    dataset, stats = build_prompts(load_rows(cfg.data), tokenizer, cfg.data)
    preflight.check_enough_prompts(cfg, stats["kept"])
    grpo_config = grpo_args(cfg, backend, stop_token_ids(tokenizer), world)
    return world, per_device, backend, resume_from, warnings, tokenizer, dataset, stats, grpo_config


def load_failure(cfg: Config, error: Exception) -> str:
    """The one line for a model that did not load: out of GPU memory is the config's doing, not the weights'."""
    first = first_line(error, 200)
    four_bit = "" if cfg.model.load_in_4bit else "set model.load_in_4bit: true or "
    if "memory for the cache blocks" in first:  # vLLM: its share holds the weights and nothing more
        return (
            f"vLLM's share of the GPU memory (model.gpu_memory_utilization={cfg.model.gpu_memory_utilization}) holds "
            f"model.name={cfg.model.name}'s weights but no KV cache: raise model.gpu_memory_utilization, "
            f"{four_bit}pick a smaller model; the memory forecast above says which fits"
        )
    if "out of memory" in first.lower():  # torch.OutOfMemoryError, or CUDA's own message in a RuntimeError
        return (
            f"the GPU ran out of memory loading model.name={cfg.model.name} ({type(error).__name__}: {first}): "
            f"lower model.gpu_memory_utilization, {four_bit}pick a smaller model; the memory forecast above says which fits"
        )
    return f"could not load the weights of model.name={cfg.model.name} ({type(error).__name__}: {first}): check the model folder or hub id"


def load_model(cfg: Config, backend: str, tokenizer):
    try:
        return backends.load_model(cfg, backend, tokenizer)
    except (OSError, ValueError, RuntimeError) as error:  # transformers/safetensors raise these for bad weights
        raise RecipeError(load_failure(cfg, error)) from None


def train(cfg: Config, trainer, resume_from: Path | None, stop: runs.GracefulStop) -> None:
    """trainer.train, with the failures of resuming a damaged checkpoint or a full disk as one line."""
    from transformers import TrainerCallback

    started = {}

    class Started(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            # The checkpoint's weights, optimizer and scheduler are loaded by now, so the logs can be trimmed.
            started["step"] = state.global_step
            if state.is_world_process_zero:
                for name in ("metrics.jsonl", "samples.jsonl"):
                    trim_jsonl(Path(cfg.output.dir) / name, state.global_step)

    trainer.add_callback(Started())
    trainer.add_callback(stop.callback(Path(cfg.output.dir)))
    try:
        try:
            trainer.train(resume_from_checkpoint=None if resume_from is None else str(resume_from))
        finally:
            # An exception leaves the progress bar mid-line: end it, so that what is printed next (the
            # one-line error, the resume command) starts a line of its own.
            for callback in trainer.callback_handler.callbacks:
                if getattr(callback, "bar", None) is not None:
                    callback.bar.close()
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise RecipeError(
                f"the disk holding output.dir={cfg.output.dir} is full: free space, then resume with --resume"
            ) from None
        if "step" in started or resume_from is None:
            raise
        raise RecipeError(
            f"could not load {resume_from} ({type(error).__name__}: {str(error)[:160]}): delete it to resume from the checkpoint before"
        ) from None
    except (RuntimeError, ValueError, KeyError, EOFError) as error:
        if "step" in started or resume_from is None:
            raise
        first = first_line(error, 160)
        raise RecipeError(
            f"could not load {resume_from} ({type(error).__name__}: {first}): delete it to resume from the checkpoint before"
        ) from None


def say(message: str, file: typing.TextIO | None = None) -> None:
    """print on the main process only, so N processes print the plan once."""
    if distributed.is_main_process():
        print(message, file=file or sys.stdout, flush=True)


def vllm_summary(cfg: Config) -> str:
    v = cfg.vllm
    if not cfg.model.fast_inference:
        return "off"
    if v.mode == "server":
        return f"server at {v.server_host}:{v.server_port}"
    return "colocate" + (f", tensor parallel {v.tensor_parallel_size}" if v.tensor_parallel_size > 1 else "")


def split_summary(cfg: Config, world: int, per_device: int) -> str:
    t = cfg.training
    return (
        f"{world} process{'es' if world > 1 else ''} x {per_device} completions each = "
        f"{t.prompts_per_step} prompt(s) x {t.num_generations} completions a step"
    )


def main(argv: typing.Sequence[str] | None = None, callbacks: typing.Sequence = ()) -> int:
    """The command line; ``callbacks`` (TrainerCallbacks) join the recipe's own when main is called from Python."""
    args = parse_args(argv)
    backends.quiet_hub()
    try:
        cfg = load_config(args.config, [*args.overrides, *(["output.resume=auto"] if args.resume else [])])
        if args.card_gib is not None and args.card_gib <= 0:
            raise RecipeError(f"--card-gib {args.card_gib:g}: give the card's memory in GiB, e.g. --card-gib 24")
        tracking.check_installed(cfg.output.report_to)
        world, per_device, backend, resume_from, warnings, tokenizer, dataset, stats, grpo_config = prepare(
            cfg, args.card_gib, planning_for_a_gpu(args)
        )
        steps, epochs = planned_steps(cfg, stats["kept"])
        for warning in warnings:
            say(f"warning: {warning}", file=sys.stderr)
        done = None if args.dry_run else finished_run(cfg, resume_from, steps)
    except RecipeError as error:
        say(f"error: {error}", file=sys.stderr)
        return 2
    if done is not None:
        say(done)
        return 0

    out = Path(cfg.output.dir)
    say(f"config (saved to {out / 'config.yaml'}):\n{config_to_yaml(cfg)}")
    say(
        f"model {cfg.model.name} | backend {backends.describe_backend(cfg, backend, world)} | {'4-bit' if cfg.model.load_in_4bit else '16-bit'} LoRA r={cfg.lora.r} | vLLM {vllm_summary(cfg)}"
    )
    say(
        f"data {cfg.data.dataset}: {stats['kept']} prompts kept of {stats['rows']} ({stats['dropped_no_gold']} without a gold answer, {stats['dropped_too_long']} over {cfg.data.max_prompt_length} tokens; longest {stats['longest_prompt_tokens']})"
    )
    say(
        f"plan {steps} steps x {cfg.training.prompts_per_step} prompt(s) x {cfg.training.num_generations} completions = {epochs:.2f} epochs; rewards {', '.join(f'{k}x{v:g}' for k, v in cfg.rewards.items())}"
    )
    say(f"split {split_summary(cfg, world, per_device)}")
    say(f"tracking {tracking.where(cfg.output.report_to, out)}")
    if args.dry_run:
        return 0

    try:
        return train_and_save(cfg, backend, resume_from, tokenizer, dataset, grpo_config, steps, argv, callbacks)
    except RecipeError as error:
        say(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say(
            f"\nstopped before a checkpoint could be saved; the newest complete one is kept: {resume_command(argv)}",
            file=sys.stderr,
        )
        return 130


def train_and_save(
    cfg: Config, backend: str, resume_from, tokenizer, dataset, grpo_config, steps: int, argv, callbacks=()
) -> int:
    out = Path(cfg.output.dir)
    main_process = distributed.is_main_process()
    try:
        if main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(config_to_yaml(cfg))
    except OSError as error:
        raise RecipeError(
            f"cannot write to output.dir={out} ({error.strerror}): choose another output.dir or free space"
        ) from None
    tracking.keep_logs_in(cfg.output.report_to, out)
    if resume_from is not None:
        say(f"resuming from {resume_from} (step {runs.saved_step(resume_from)})")
    elif cfg.output.resume != "never" and runs.earlier_outputs(out):
        say(
            f"warning: no complete checkpoint in {out}: starting again from step 0 (its logs are cleared)",
            file=sys.stderr,
        )

    started = time.time()
    model, tokenizer = load_model(cfg, backend, tokenizer)
    say(f"loaded in {time.time() - started:.0f}s: {trainable_parameters(model):,} trainable parameters")
    say("note: GRPO's loss starts near 0 and stays small; watch the reward and correctness instead")
    trainer = build_trainer(cfg, backend, model, tokenizer, dataset, grpo_config, callbacks)
    # The trl backend starts its vLLM engine here, Unsloth's inside load_model: this line is the same
    # moment on both, so their start-up times compare.
    say(f"ready to train in {time.time() - started:.0f}s")
    if distributed.world_size() > 1 and grpo_config.device.type == "cpu":
        distributed.accept_indexed_cpu_locations()
    with runs.GracefulStop() as stop:
        train(cfg, trainer, resume_from, stop)
        step = trainer.state.global_step
        if stop.received is not None and step < steps:
            say(
                f"stopped at step {step} of {steps}: checkpoint-{step} saved; continue with: {resume_command(argv)}",
                file=sys.stderr,
            )
            return stop.exit_code
        try:
            adapter = save_adapter(trainer, tokenizer, out)
        except OSError as error:
            raise RecipeError(
                f"could not save {out / 'adapter'} ({error.strerror}): free space, then rerun with --resume to save it from the last checkpoint"
            ) from None
    if main_process:
        plot_curves(out)
    say(
        f"done in {(time.time() - started) / 60:.1f} min: adapter in {adapter}, metrics in {out / 'metrics.jsonl'}, samples in {out / 'samples.jsonl'}, plots in {out / 'plots'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
