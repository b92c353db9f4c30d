"""The GRPOConfig the recipe builds carries the YAML's reward weights, in the order of its reward functions.

train_grpo.build_trainer hands TRL one function per key of ``rewards``, in the mapping's order, and TRL pairs
reward_weights with them by position: a weight lost, or listed in another order, trains on another objective
with nothing failing.
"""

from pathlib import Path

import pytest

from recipe.config import load_config
from recipe.grpo_config import grpo_args

ROOT = Path(__file__).resolve().parents[1]

WEIGHTS = [
    pytest.param([], [1.0, 1.0, 1.0, 1.0, 1.0], id="the-shipped-five-at-1"),
    pytest.param(["rewards={xmlcount: 0.5, correctness: 2.0}"], [0.5, 2.0], id="a-subset-with-its-weights"),
    # Not the default order: the weights follow the mapping as written, as the functions do.
    pytest.param(
        ["rewards={correctness: 2.0, strict_format: 0.25, xmlcount: 0.5}"], [2.0, 0.25, 0.5], id="the-order-written"
    ),
    pytest.param(["rewards.correctness=3"], [1.0, 1.0, 1.0, 1.0, 3.0], id="one-default-weight-changed"),
]


@pytest.mark.parametrize("overrides, weights", WEIGHTS)
def test_grpo_config_carries_the_reward_weights_in_the_rewards_order(tmp_path, overrides, weights):
    cfg = load_config(str(ROOT / "config.yaml"), [f"output.dir={tmp_path}", *overrides])
    assert len(cfg.rewards) == len(weights)
    args = grpo_args(cfg, "trl", [0], world=1)
    assert list(args.reward_weights) == weights
    # The same weights by name: each lands on its own reward's function.
    assert dict(zip(cfg.rewards, args.reward_weights)) == cfg.rewards
