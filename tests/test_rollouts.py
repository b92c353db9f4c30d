"""recipe/rollouts.py: vLLM returns token ids alone only where nothing reads the rest, on stand-in trainers."""

import math
from types import SimpleNamespace

import pytest

from recipe import rollouts


class FakeGeneration:
    """VLLMGeneration's surface: generation_kwargs applied last to SamplingParams, and generate's 4-tuple."""

    def __init__(self, mode="colocate", generation_kwargs=None):
        self.mode, self.generation_kwargs, self.calls = mode, generation_kwargs, []

    def generate(self, prompts, num_generations, profiler=None):
        self.calls.append(dict(self.generation_kwargs or {}))
        completions = [[7] * (3 + i) for i in range(len(prompts) * num_generations)]
        asked = (self.generation_kwargs or {}).get("logprobs", 0) is not None
        logprobs = [[[-0.5]] * len(c) for c in completions] if asked else None
        return prompts, completions, logprobs, logprobs


def trainer(correction=False, mask=None, mode="colocate", kwargs=None, on_trainer=True):
    args = SimpleNamespace(vllm_importance_sampling_correction=correction, off_policy_mask_threshold=mask)
    t = SimpleNamespace(args=args, vllm_generation=FakeGeneration(mode, kwargs))
    if on_trainer:  # GRPOTrainer copies the flag from its args (trl grpo_trainer.py)
        t.vllm_importance_sampling_correction = correction
    return t


def test_unsloths_trainer_gets_token_ids_only_and_trl_still_finds_one_logprob_per_token():
    stop = {"stop_token_ids": [2, 5]}
    t = trainer(kwargs=stop)
    assert rollouts.token_ids_only(t) is True
    # The recipe's stop tokens stay; the GRPOConfig's own dict is not changed under it.
    assert t.vllm_generation.generation_kwargs == {"stop_token_ids": [2, 5], "logprobs": None, "detokenize": False}
    assert stop == {"stop_token_ids": [2, 5]}
    prompts, completions, logprobs, _ = t.vllm_generation.generate([[1, 2], [3]], num_generations=2)
    assert t.vllm_generation.calls[-1]["logprobs"] is None
    # What GRPOTrainer._generate_single_turn does with them: one per completion token, NaN (unread).
    per_token = [[lp[0] for lp in seq] for seq in logprobs]
    assert [len(seq) for seq in per_token] == [len(c) for c in completions]
    assert all(math.isnan(x) for seq in per_token for x in seq)


@pytest.mark.parametrize(
    "t",
    [
        pytest.param(trainer(correction=True), id="trl-default-importance-sampling-reads-them"),
        pytest.param(trainer(mask=0.5), id="off-policy-mask-reads-them"),
        pytest.param(trainer(correction=True, on_trainer=False), id="flag-only-on-args"),
        pytest.param(trainer(mode="server"), id="vllm-server-mode"),
        pytest.param(SimpleNamespace(args=SimpleNamespace(), vllm_generation=None), id="no-vllm"),
    ],
)
def test_a_trainer_that_reads_them_or_has_no_colocated_vllm_is_left_alone(t):
    before = None if t.vllm_generation is None else (t.vllm_generation.generate, t.vllm_generation.generation_kwargs)
    assert rollouts.token_ids_only(t) is False
    after = None if t.vllm_generation is None else (t.vllm_generation.generate, t.vllm_generation.generation_kwargs)
    assert after == before


def test_without_generation_kwargs_it_still_asks_for_ids_only():
    t = trainer(kwargs=None)
    assert rollouts.token_ids_only(t)
    t.vllm_generation.generate([[1]], num_generations=1)
    assert t.vllm_generation.calls[-1] == {"logprobs": None, "detokenize": False}


def test_the_pinned_trl_applies_the_kwargs_last_and_reads_one_logprob_per_token():
    # What token_ids_only relies on, in the TRL this project pins: generation_kwargs override TRL's own
    # logprobs=0 in colocate mode, and the trainer takes lp[0] of each token's entry.
    import inspect

    from trl.generation import vllm_generation
    from trl.trainer import grpo_trainer

    generate = inspect.getsource(vllm_generation.VLLMGeneration.generate)
    assert generate.index('"logprobs": self.logprobs') < generate.index(
        "generation_kwargs.update(self.generation_kwargs)"
    )
    assert "logprobs = [[lp[0] for lp in seq] for seq in logprobs]" in inspect.getsource(grpo_trainer)
    assert vllm_generation.extract_logprobs([SimpleNamespace(outputs=[SimpleNamespace(logprobs=None)])]) == (None, None)
