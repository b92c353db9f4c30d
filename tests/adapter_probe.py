"""Does the LoRA adapter drive the trainer's vLLM rollouts? Run by tests/test_gpu.py, one backend per process.

    python tests/adapter_probe.py --backend unsloth --out probe.json
    python tests/adapter_probe.py --backend unsloth --merged-rollouts --out probe.json

Builds the trainer exactly as train_grpo.main() does (SmolLM2 assets), then samples greedily through
the trainer's own generation step (GRPOTrainer._generate_single_turn, which syncs the policy into vLLM
when the step changed) four times: with the fresh adapter (LoRA B is zero, so it equals the base) twice,
with LoRA B moved to random values, and with B zeroed again. Unsloth once sampled every rollout from
the base model with TRL >= 1.10 (its PR #8701); the moved outputs must differ from the others.
Unsloth folds the adapter into the weights it shares with vLLM for each rollout and unfolds it after
(UNSLOTH_VLLM_MERGED_ROLLOUT=1, recipe/backend.py's default on 16-bit bases) or runs it beside them
(=0): the same must hold either way, and the base must come back exact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "Tom has 3 apples and buys 4 more. How many apples does Tom have?",
    "A box holds 12 pencils. How many pencils are in 5 boxes?",
    "Mia had 40 stickers and gave away 15. How many are left?",
    "A train travels 60 miles in one hour. How far does it go in 3 hours?",
    "Sam reads 8 pages a day. How many pages does he read in a week?",
    "A pizza has 8 slices and 3 friends eat 2 slices each. How many slices are left?",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["unsloth", "trl"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--merged-rollouts", action="store_true", help="Unsloth only: UNSLOTH_VLLM_MERGED_ROLLOUT=1 (without: 0)"
    )
    args = parser.parse_args()
    if args.merged_rollouts and args.backend != "unsloth":
        parser.error("--merged-rollouts is Unsloth's switch: use it with --backend unsloth")
    if args.backend == "unsloth":  # read by unsloth_zoo when the model loads; set either way, over the recipe's default
        os.environ["UNSLOTH_VLLM_MERGED_ROLLOUT"] = "1" if args.merged_rollouts else "0"

    import train_grpo
    from recipe import backend as backends
    from recipe.config import load_config
    from recipe.data import build_prompts, chat_prompt, load_rows, load_tokenizer, stop_token_ids
    from recipe.grpo_config import grpo_args

    overrides = [
        f"model.backend={args.backend}",
        # vLLM samples greedily below a temperature of 1e-5: the same weights give the same tokens.
        "training.temperature=1e-6",
        "training.max_completion_length=32",
        f"output.dir={args.out.parent / ('probe-' + args.backend + ('-merged' if args.merged_rollouts else ''))}",
    ]
    if args.backend == "trl":
        overrides.append("model.gpu_memory_utilization=0.3")
    cfg = load_config(str(ROOT / "configs" / "smollm2-learn.yaml"), overrides)
    if args.backend == "unsloth":
        backends.import_unsloth(cfg.model)
    import torch

    tokenizer = load_tokenizer(cfg.model.name)
    dataset, _ = build_prompts(load_rows(cfg.data), tokenizer, cfg.data)
    grpo_config = grpo_args(cfg, args.backend, stop_token_ids(tokenizer))
    model, tokenizer = backends.load_model(cfg, args.backend, tokenizer)
    trainer = train_grpo.build_trainer(cfg, args.backend, model, tokenizer, dataset, grpo_config)
    prompt_ids = [
        tokenizer.apply_chat_template(chat_prompt(q), add_generation_prompt=True, tokenize=True, return_dict=False)
        for q in QUESTIONS
    ]
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name and "default" in name]

    def rollout() -> list[list[int]]:
        trainer.state.global_step += 1  # a new step: the trainer syncs the policy before generating
        completion_ids, _ = trainer._generate_single_turn(prompt_ids, None, {}, 1)
        return [list(map(int, ids)) for ids in completion_ids]

    def frozen() -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if "lora_" not in n}

    def engine() -> dict[str, torch.Tensor]:
        """vLLM's own weights where TRL loads them (colocate); Unsloth's vLLM keeps its base and runs the LoRA beside it."""
        if args.backend != "trl":
            return {}
        runner = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner
        return {n: p.detach().cpu().clone() for n, p in runner.model.named_parameters()}

    # What each of TRL's prefix-cache resets after a sync returned: a failed one lets the next rollout
    # reuse prompt KV computed with the weights before the sync.
    resets: list = []
    if args.backend == "trl":
        llm = trainer.vllm_generation.llm
        reset = llm.reset_prefix_cache
        llm.reset_prefix_cache = lambda *a, **k: resets.append(reset(*a, **k)) or resets[-1]

    def changed(a: dict, b: dict) -> int:
        return sum(int((a[n] != b[n]).sum()) for n in a)

    loaded, base = engine(), frozen()
    fresh = rollout()
    engine_fresh = engine()
    # The same weights synced once more: tokens that differ here are the engine's, not the adapter's.
    fresh_again = rollout()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in lora_b:
            p.normal_(0.0, 0.05)
    moved = rollout()
    engine_moved = engine()
    with torch.no_grad():
        for p in lora_b:
            p.zero_()
    zeroed = rollout()
    engine_zeroed = engine()
    report = {
        "lora_b_tensors": len(lora_b),
        "fresh": fresh,
        "moved": moved,
        "zeroed": zeroed,
        "fresh_again": fresh_again,
        # Elements that differ: the policy's frozen base after two syncs, and vLLM's weights between rollouts.
        "base_drift": changed(base, frozen()),
        "engine_fresh_vs_loaded": changed(loaded, engine_fresh) if loaded else None,
        "engine_moved_vs_fresh": changed(engine_fresh, engine_moved) if loaded else None,
        "engine_zeroed_vs_fresh": changed(engine_fresh, engine_zeroed) if loaded else None,
        "prefix_cache_resets": resets,
    }
    args.out.write_text(json.dumps(report))
    print("probe:", json.dumps(report), flush=True)  # in the test's log too, which outlives its tmp folder
    return 0


if __name__ == "__main__":
    sys.exit(main())
