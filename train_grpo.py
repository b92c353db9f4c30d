"""Teach a small base model to reason with GRPO and rule-based rewards (DeepSeek-R1's idea) on one GPU.

    python train_grpo.py --config config.yaml
    python train_grpo.py --config config.yaml --set training.max_steps=500 --set output.dir=runs/short
    python train_grpo.py --config config.yaml --resume        # continue from the latest checkpoint
    python train_grpo.py --config config.yaml --dry-run       # validate, build the data, load no model

Offline on a CPU, with a tiny model and problems this project builds itself (about a minute):

    python offline.py tiny && python train_grpo.py --config configs/tiny-cpu.yaml

The script reads top to bottom: config (typed, validated before anything heavy loads), data
(GSM8K prompts in chat form), model (Unsloth + vLLM on a GPU, or plain transformers + PEFT),
trainer (TRL's GRPOTrainer with the rewards of rewards.py) and main().
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
import typing
from pathlib import Path

import plots
import rewards
from recipe import backend as backends
from recipe import distributed
from recipe.config import Config, config_to_yaml, load_config
from recipe.data import build_prompts, load_rows, load_tokenizer, stop_token_ids
from recipe.errors import RecipeError
from recipe.jsonl import append_jsonl, trim_jsonl



def resolve_resume(cfg: Config) -> str | None:
    """The checkpoint to resume from, or None; refuses to overwrite a run that has checkpoints."""
    out = Path(cfg.output.dir)
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    if cfg.output.resume == "never":
        if checkpoints:
            raise RecipeError(f"{out} already holds {checkpoints[-1].name}: pass --resume to continue that run, or set output.dir to a new folder")
        return None
    chosen = (str(checkpoints[-1]) if checkpoints else None) if cfg.output.resume == "auto" else cfg.output.resume
    if chosen is not None and not (Path(chosen) / "trainer_state.json").is_file():
        raise RecipeError(f"{chosen} has no trainer_state.json (an unfinished save?): delete it to resume from the one before, or set output.resume to another checkpoint")
    return chosen


def grpo_args(cfg: Config, backend: str, stop_ids: list[int], world: int | None = None):
    """TRL's GRPOConfig from ours for ``world`` processes (default: the launcher's); GRPOConfig checks its own invariants.

    Built before the model loads: under DeepSpeed ZeRO-3 it is what makes from_pretrained shard the weights.
    """
    import torch
    from trl import GRPOConfig

    t, o, v = cfg.training, cfg.output, cfg.vllm
    world = distributed.world_size() if world is None else world
    cuda = torch.cuda.is_available()
    args = GRPOConfig(
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
        vllm_gpu_memory_utilization=cfg.model.gpu_memory_utilization,
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
        report_to="none",
        log_completions=False,
    )
    if args.world_size != world:
        raise RecipeError(f"WORLD_SIZE says {world} processes but accelerate sees {args.world_size}: launch with torchrun or accelerate launch, not a mix")
    return args


def trainable_parameters(model) -> int:
    # Only the trainable count: a 4-bit model packs two weights per stored element, so totals mislead.
    # Under ZeRO-3 a parameter holds only this process's shard; ds_numel is its full size.
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


def memory_plan(cfg: Config) -> str:
    import torch

    if not torch.cuda.is_available():
        return "CPU only (no GPU memory plan)"
    free, total = (b / 2**30 for b in torch.cuda.mem_get_info())
    plan = f"{torch.cuda.get_device_name(0)} {total:.0f} GiB, {free:.1f} free; "
    if cfg.model.fast_inference:
        # Unsloth takes model.gpu_memory_utilization of the memory free at load time, not of the card.
        vllm = cfg.model.gpu_memory_utilization * free
        plan += f"vLLM takes {cfg.model.gpu_memory_utilization:.2f} x {free:.1f} = {vllm:.1f} GiB (weights + KV cache), training the rest; "
    plan += "lower model.gpu_memory_utilization or training.num_generations if it runs out of memory"
    return plan


HEALTH_WINDOW = 10


def health_warnings(recent: list[dict]) -> list[str]:
    """Hints when the last HEALTH_WINDOW logged steps show GRPO has nothing to learn from."""
    if len(recent) < HEALTH_WINDOW:
        return []
    found = []
    if all(row.get("completions/clipped_ratio", 0.0) >= 0.9 for row in recent):
        found.append("almost every completion stops at training.max_completion_length, so no answer can follow: raise it (and model.max_seq_length)")
    if all(row.get("frac_reward_zero_std", 0.0) >= 0.99 for row in recent):
        found.append("every completion of a prompt gets the same reward, so GRPO has no advantage to follow: look at samples.jsonl (is the format ever written?)")
    return found


def make_callbacks(cfg: Config, sample_log: "SampleLog"):
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
                append_jsonl([{"step": state.global_step, "time": round(time.time(), 1), **logs}], out / "metrics.jsonl")
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
                shown = {"reward": logs.get("reward"), "correct": logs.get("rewards/correctness/mean"), "len": logs.get("completions/mean_length"), "s/step": logs.get("step_time")}
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
                self.batch = {"completions": completions, "answer": kwargs.get("answer"), "question": kwargs.get("question")}
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


def build_trainer(cfg: Config, model, tokenizer, dataset, args):
    from transformers.trainer_callback import ProgressCallback
    from trl import GRPOTrainer

    sample_log = SampleLog(Path(cfg.output.dir) / "samples.jsonl", cfg.output.sample_every)
    reward_funcs = [sample_log.record(rewards.REWARDS[name]) for name in cfg.rewards]
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=args, train_dataset=dataset)
    trainer.remove_callback(ProgressCallback)
    for callback in make_callbacks(cfg, sample_log):
        trainer.add_callback(callback)
    return trainer


def planned_steps(cfg: Config, n_prompts: int) -> tuple[int, float]:
    per_epoch = math.ceil(n_prompts / cfg.training.prompts_per_step)
    if cfg.training.max_steps > 0:
        return cfg.training.max_steps, cfg.training.max_steps / per_epoch
    return math.ceil(per_epoch * cfg.training.num_train_epochs), cfg.training.num_train_epochs


def save_adapter(trainer, tokenizer, out: Path) -> Path:
    adapter = out / "adapter"
    # Every process calls save_model: under ZeRO-3 each holds a shard to gather; only the main one writes.
    trainer.save_model(str(adapter))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(adapter))
    return adapter


def plot_curves(out: Path) -> list[Path]:
    """PNGs of metrics.jsonl, best effort: the adapter and logs are saved, so nothing here may fail the run."""
    try:
        return plots.plot_metrics(out / "metrics.jsonl", out / "plots")
    except Exception as error:  # matplotlib raises many types; a missing plot is only a warning
        print(f"warning: no plots ({type(error).__name__}: {error}); redraw with python plots.py {out / 'metrics.jsonl'}", file=sys.stderr)
        return []


def parse_args(argv: typing.Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (defaults: the dataclasses in this file)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. training.max_steps=500 (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir (same as output.resume=auto)")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, build the dataset and print the plan without loading the model")
    return parser.parse_args(argv)


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
    return (f"{world} process{'es' if world > 1 else ''} x {per_device} completions each = "
            f"{t.prompts_per_step} prompt(s) x {t.num_generations} completions a step")


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends.quiet_hub()
    try:
        cfg = load_config(args.config, [*args.overrides, *(["output.resume=auto"] if args.resume else [])])
        world = distributed.world_size()
        per_device = distributed.per_device_batch(cfg, world)
        backend = backends.resolve_backend(cfg, world)
        resume_from = resolve_resume(cfg)
        if backend == "unsloth":
            backends.import_unsloth(cfg.model)
        tokenizer = load_tokenizer(cfg.model.name)
        dataset, stats = build_prompts(load_rows(cfg.data), tokenizer, cfg.data)
        grpo_config = grpo_args(cfg, backend, stop_token_ids(tokenizer), world)
    except RecipeError as error:
        say(f"error: {error}", file=sys.stderr)
        return 2

    out = Path(cfg.output.dir)
    steps, epochs = planned_steps(cfg, stats["kept"])
    say(f"config (saved to {out / 'config.yaml'}):\n{config_to_yaml(cfg)}")
    say(f"model {cfg.model.name} | backend {backends.describe_backend(cfg, backend, world)} | {'4-bit' if cfg.model.load_in_4bit else '16-bit'} LoRA r={cfg.lora.r} | vLLM {vllm_summary(cfg)}")
    say(f"data {cfg.data.dataset}: {stats['kept']} prompts kept of {stats['rows']} ({stats['dropped_no_gold']} without a gold answer, {stats['dropped_too_long']} over {cfg.data.max_prompt_length} tokens; longest {stats['longest_prompt_tokens']})")
    say(f"plan {steps} steps x {cfg.training.prompts_per_step} prompt(s) x {cfg.training.num_generations} completions = {epochs:.2f} epochs; rewards {', '.join(f'{k}x{v:g}' for k, v in cfg.rewards.items())}")
    say(f"split {split_summary(cfg, world, per_device)}")
    say(f"memory {memory_plan(cfg)}")
    if args.dry_run:
        return 0

    main_process = distributed.is_main_process()
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(config_to_yaml(cfg))
    if resume_from is not None:
        resumed_step = int(json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"])
        if main_process:
            for name in ("metrics.jsonl", "samples.jsonl"):
                trim_jsonl(out / name, resumed_step)
        say(f"resuming from {resume_from} (step {resumed_step})")

    started = time.time()
    model, tokenizer = backends.load_model(cfg, backend, tokenizer)
    say(f"loaded in {time.time() - started:.0f}s: {trainable_parameters(model):,} trainable parameters")
    say("note: GRPO's loss starts near 0 and stays small; watch the reward and correctness instead")
    trainer = build_trainer(cfg, model, tokenizer, dataset, grpo_config)
    if world > 1 and grpo_config.device.type == "cpu":
        distributed.accept_indexed_cpu_locations()
    trainer.train(resume_from_checkpoint=resume_from)
    adapter = save_adapter(trainer, tokenizer, out)
    if main_process:
        plot_curves(out)
    say(f"done in {(time.time() - started) / 60:.1f} min: adapter in {adapter}, metrics in {out / 'metrics.jsonl'}, samples in {out / 'samples.jsonl'}, plots in {out / 'plots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
