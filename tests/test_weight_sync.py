"""The trl backend's sync into vLLM: TRL's merged weights, bit for bit, with the frozen base left as it was."""

import contextlib
import types

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, Qwen2Config
from trl.generation.vllm_generation import VLLMGeneration

from recipe.backend import keep_base_weights_exact

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_peft(lora_b_std: float = 1e-3, **lora):
    torch.manual_seed(0)
    shape = Qwen2Config(
        vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    )
    model = AutoModelForCausalLM.from_config(shape, dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS, **lora))
    model.add_adapter("ref", LoraConfig(r=8, lora_alpha=16, target_modules=PROJECTIONS, **lora))  # as TRL with beta > 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, lora_b_std)  # a trained adapter: B is no longer zero
    return model


def generation_for(model) -> VLLMGeneration:
    """TRL's VLLMGeneration without an engine: only what its weight iteration reads."""
    generation = object.__new__(VLLMGeneration)
    generation.model = model
    generation._dist = types.SimpleNamespace(is_fsdp=False, gather_params=lambda params: contextlib.nullcontext())
    return generation


def base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def drift(model, before: dict[str, torch.Tensor]) -> int:
    """Elements of the frozen weights that are no longer what they were."""
    return sum(int((p != before[n]).sum()) for n, p in model.named_parameters() if n in before)


def test_vllm_gets_trls_merged_weights_bit_for_bit_and_the_base_stays_exact():
    model = tiny_peft()
    generation = generation_for(model)
    before = base_weights(model)
    assert keep_base_weights_exact(types.SimpleNamespace(vllm_generation=generation))

    ours = [(name, tensor.clone()) for name, tensor in generation._iter_named_params()]
    assert drift(model, before) == 0
    trls = [(name, tensor.clone()) for name, tensor in VLLMGeneration._iter_named_params(generation)]
    assert [name for name, _ in ours] == [name for name, _ in trls]
    assert not any("lora_" in name or "base_layer" in name for name, _ in ours)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(ours, trls))
    changed = sum(
        not torch.equal(t, before["base_model.model." + n.replace("proj.", "proj.base_layer.")]) for n, t in ours
    )
    assert changed == 2 * len(PROJECTIONS)  # vLLM does get the adapter, in every projection


def test_trls_in_place_merge_drifts_the_frozen_base_and_ours_does_not():
    # Regression: trl#6688. A run syncs once a generation step; 22,419 steps at steps_per_generation 4
    # are about 5,600 syncs, and 100 already move the frozen weights on TRL's path.
    syncs = 100
    ours, trls = tiny_peft(), tiny_peft()
    before_ours, before_trls = base_weights(ours), base_weights(trls)
    exact = generation_for(ours)
    keep_base_weights_exact(types.SimpleNamespace(vllm_generation=exact))
    for _ in range(syncs):
        for _ in exact._iter_named_params():
            pass
        for _ in VLLMGeneration._iter_named_params(generation_for(trls)):
            pass
    assert drift(ours, before_ours) == 0
    assert drift(trls, before_trls) > 0


@pytest.mark.parametrize(
    "lora, expected",
    [
        pytest.param({}, True, id="plain-lora"),
        pytest.param({"use_dora": True}, False, id="dora-keeps-trls-path"),
        pytest.param(
            {"lora_bias": True},
            False,
            id="lora-bias-keeps-trls-path",
            marks=pytest.mark.filterwarnings("ignore:`lora_bias=True` was passed"),
        ),
    ],
)
def test_the_exact_path_is_used_only_where_it_reproduces_peft_merge(lora, expected):
    assert keep_base_weights_exact(types.SimpleNamespace(vllm_generation=generation_for(tiny_peft(**lora)))) is expected


@pytest.mark.parametrize(
    "trainer",
    [
        pytest.param(types.SimpleNamespace(), id="no-vllm"),
        pytest.param(types.SimpleNamespace(vllm_generation=None), id="vllm-off"),
    ],
)
def test_without_trls_vllm_nothing_changes(trainer):
    assert keep_base_weights_exact(trainer) is False
