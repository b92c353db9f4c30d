"""The bench's `notebook` and `notebook-script` rows: Unsloth's Qwen2.5 (3B) GRPO notebook as a script, not
as this recipe.

    python bench/bench.py --settings notebook,notebook-script   # under the 24 GB cap, timed like every row
    python bench/unsloth_notebook.py --config configs/notebook-4090.yaml --set model.name=DIR --set data.dataset=FILE

The notebook's calls, in its order, with its arguments: UNSLOTH_VLLM_STANDBY=1 before Unsloth is
imported (unless the environment already sets it), FastLanguageModel.from_pretrained and
get_peft_model, a GRPOConfig and GRPOTrainer left to TRL's and Unsloth's defaults for everything else (Unsloth sizes vLLM's batch; this recipe sizes it to
one step's completions). What differs: the seed's rank 32, 6 completions and vLLM share 0.59; local
paths (model.name, data.dataset, output.dir) and max_steps from the config; this project's prompts and
fixed rewards (the notebook's print one sample per step); a callback writing metrics.jsonl for the
bench; and with --card-gib and standby on, the standby share Unsloth would pick on that card.
UNSLOTH_VLLM_STANDBY=0 in the environment runs it as the notebook's exported script does, without standby.
configs/notebook-4090.yaml is the same recipe through train_grpo.py (the learning arm).
"""

from __future__ import annotations

import os
import sys
import time
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import rewards  # noqa: E402
import train_grpo  # noqa: E402
from recipe import backend  # noqa: E402
from recipe.callbacks import log_metrics  # noqa: E402
from recipe.config import ModelConfig, load_config  # noqa: E402

LORA_RANK = 32  # the notebook's 64, the seed's 32
# The notebook's first cell, before Unsloth is imported. Its exported script (python_scripts/ in Unsloth's
# notebooks repository) comments that cell out: the bench's notebook-script row runs it with "0".
ENVIRONMENT = {"UNSLOTH_VLLM_STANDBY": "1"}
MODEL = {
    "max_seq_length": 1024,
    "load_in_4bit": True,
    "fast_inference": True,
    "max_lora_rank": LORA_RANK,
    "gpu_memory_utilization": 0.59,  # the notebook's 0.9, the seed's 0.59; standby mode raises either
}
PEFT = {
    "r": LORA_RANK,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "lora_alpha": LORA_RANK,
    "use_gradient_checkpointing": "unsloth",
    "random_state": 3407,
}
TRAINING = {
    "use_vllm": True,
    "learning_rate": 5e-6,
    "adam_beta1": 0.9,
    "adam_beta2": 0.99,
    "weight_decay": 0.001,
    "warmup_ratio": 0.1,
    "lr_scheduler_type": "cosine",
    "optim": "adamw_8bit",
    "logging_steps": 1,
    "per_device_train_batch_size": 1,  # Unsloth raises it to num_generations
    "gradient_accumulation_steps": 1,
    "num_generations": 6,  # the notebook's 8, the seed's 6
    "max_prompt_length": 256,
    "max_completion_length": 200,
    "save_steps": 250,
    "max_grad_norm": 0.1,
    "report_to": "none",
}
# The notebook's reward functions, in its order (this project's fixed versions).
REWARDS = ["xmlcount", "soft_format", "strict_format", "integer_answer", "correctness"]


def standby_share(card_gib: float) -> float:
    """The vLLM share Unsloth's standby mode picks on a card of ``card_gib`` (unsloth_zoo 2026.10.7 with
    vLLM >= 0.11: a tier by a tenth of the card's memory, times 0.95).

    Unsloth reads the whole GPU's memory, so on the bench's capped card it would pick an 80 GB card's
    share (0.879, measured) instead of a 4090's (0.784): the bench asks for the card's share itself.
    """
    tiers = ((4.0, 0.925), (2.5, 0.9), (2.0, 0.825), (1.4, 0.8), (1.0, 0.775))
    return round(next((share for tenth, share in tiers if card_gib / 10 >= tenth), 0.75) * 0.95, 5)


def import_unsloth(model: ModelConfig) -> bool:
    """The notebook's environment where the caller's sets none, then Unsloth, which must come before trl.
    Whether standby mode is on."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    backend.import_unsloth(model)
    return os.environ["UNSLOTH_VLLM_STANDBY"] != "0"  # as Unsloth's vLLM loader reads it


def metrics_log(out: Path):
    """Each logged step as one metrics.jsonl line, as train_grpo.py writes them: what the bench reads."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                log_metrics(out, state, logs)

    return MetricsLog()


def main(argv: typing.Sequence[str] | None = None, callbacks: typing.Sequence = ()) -> int:
    args = train_grpo.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    import torch

    if not torch.cuda.is_available():
        print("error: bench/unsloth_notebook.py calls Unsloth directly, which needs a CUDA GPU", file=sys.stderr)
        return 2
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    standby = import_unsloth(cfg.model)
    from unsloth import FastLanguageModel

    from recipe import data

    print(
        f"notebook script: model {cfg.model.name} | backend unsloth | 4-bit LoRA r={LORA_RANK} | "
        f"vLLM standby {'on' if standby else 'off'}",
        flush=True,
    )
    started = time.time()
    model_args = dict(MODEL)
    if standby and args.card_gib:  # the bench's capped card; without standby the share is the notebook's
        os.environ["UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE"] = "1"
        model_args["gpu_memory_utilization"] = standby_share(args.card_gib)
    model, tokenizer = FastLanguageModel.from_pretrained(**backend.unsloth_source(cfg.model.name), **model_args)
    model = FastLanguageModel.get_peft_model(model, **PEFT)
    trainable = train_grpo.trainable_parameters(model)
    print(f"loaded in {time.time() - started:.0f}s: {trainable:,} trainable parameters", flush=True)
    dataset, _ = data.build_prompts(data.load_rows(cfg.data), tokenizer, cfg.data)

    from trl import GRPOConfig, GRPOTrainer

    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[rewards.REWARDS[name] for name in REWARDS],
        args=GRPOConfig(**TRAINING, max_steps=cfg.training.max_steps, output_dir=str(out)),
        train_dataset=dataset,
        callbacks=[metrics_log(out), *callbacks],
    )
    print(f"ready to train in {time.time() - started:.0f}s", flush=True)
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
