"""Rollouts that ask vLLM for token ids alone when the trainer reads nothing else.

TRL 1.14.2 asks vLLM for each sampled token's log-prob (``logprobs=0`` in VLLMGeneration) and vLLM
detokenizes every completion as it decodes. The text is never read: TRL decodes the token ids itself.
The log-probs are read only by TRL's importance-sampling correction and the off-policy mask; Unsloth
turns the correction off by default and drops them before its loss when neither is on
(unsloth_zoo/rl_replacements.py, ``_sampling_logps_used``). Asking for neither saves vLLM a Python
object per token per sequence at every decode step, and lets Unsloth's sampler take its path for
requests without log-probs (unsloth_zoo/vllm_utils.py, ``patch_vllm_processed_logprobs_fast_path``).
"""

from __future__ import annotations

import functools
import math


def reads_sampling_logprobs(trainer) -> bool:
    """Whether the trainer's loss or metrics read vLLM's per-token sampling log-probs."""
    correction = getattr(trainer, "vllm_importance_sampling_correction", None)
    if correction is None:
        correction = getattr(trainer.args, "vllm_importance_sampling_correction", True)
    return bool(correction) or getattr(trainer.args, "off_policy_mask_threshold", None) is not None


def token_ids_only(trainer) -> bool:
    """Have the trainer's colocated vLLM return token ids alone (no log-probs, no text) when nothing reads
    them; True when it now does.

    TRL still takes one log-prob per token from what generate returns (``[[lp[0] for lp in seq] ...]``
    in GRPOTrainer._generate_single_turn) and keeps them unread, so NaN stands in for each: TRL's own
    marker for a token vLLM could not score.
    """
    generation = getattr(trainer, "vllm_generation", None)
    if generation is None or getattr(generation, "mode", None) != "colocate" or reads_sampling_logprobs(trainer):
        return False
    # A new dict: TRL's is the GRPOConfig's own generation_kwargs object.
    generation.generation_kwargs = {**(generation.generation_kwargs or {}), "logprobs": None, "detokenize": False}
    generate = generation.generate

    @functools.wraps(generate)
    def ids_only(*args, **kwargs):
        prompt_ids, completion_ids, logprobs, logprob_token_ids = generate(*args, **kwargs)
        if logprobs is None:
            logprobs = [[[math.nan]] * len(ids) for ids in completion_ids]
        return prompt_ids, completion_ids, logprobs, logprob_token_ids

    generation.generate = ids_only
    return True
