"""recipe/graphed_step.py against TRL's own training step: the same loss, gradients and statistics from one
batch that TRL built (its padding, old and reference log-probs, rewards and advantages), on the tiny model."""

import os
import types
from collections import defaultdict

import pytest
import torch

import train_grpo
from conftest import ROOT
from recipe import graphed_step
from recipe.config import load_config


def synthetic_completions(tokenizer, max_len: int, pad_id_every: int = 0):
    """TRL's sampler replaced: completions of varied lengths, one cut at the length cap, each ending in EOS, or
    with ``pad_id_every``, every so many in the pad id (Qwen2.5 base models' EOS is their pad token)."""
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    texts = ["<reasoning>\nAdd.\n</reasoning>\n<answer>\n7\n</answer>", "<answer>3</answer>", "So the total is 12."]

    def sample(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        out = []
        for i in range(len(prompt_ids)):
            ids = tokenizer(texts[i % 3] * (1 + i % 4), add_special_tokens=False)["input_ids"]
            end = tokenizer.pad_token_id if pad_id_every and i % pad_id_every == 0 else eos
            out.append((ids + [end])[:max_len] if i % 5 else (ids * max_len)[:max_len])
        return out, None

    return sample


@pytest.fixture(scope="module", params=[True, False], ids=["bias-corrected-kl", "plain-kl"])
def trl_step(request, tiny_assets, tmp_path_factory):
    """The tiny trainer, one of its step batches (rows from 4 prompts, as TRL shuffles them), and TRL's loss,
    gradients and logged metrics for it."""
    overrides = [
        f"model.name={tiny_assets / 'model'}",
        f"data.dataset={tiny_assets / 'data' / 'train.jsonl'}",
        f"output.dir={tmp_path_factory.mktemp('graphed')}",
        "training.num_generations=6",
        "training.steps_per_generation=4",
        "training.beta=0.04",
        "training.loss_type=grpo",
        "training.temperature=0.9",
        "training.max_completion_length=24",
        f"training.trl.use_bias_correction_kl={str(request.param).lower()}",
    ]
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), overrides)
    prepared = train_grpo.prepare(cfg, None, False)
    model, tokenizer = train_grpo.load_model(cfg, prepared.backend, prepared.tokenizer)
    trainer = train_grpo.build_trainer(cfg, prepared.backend, model, tokenizer, prepared.dataset, prepared.grpo_config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # PEFT starts B at zero: the policy would equal the reference and A get no gradient
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))
    trainer._generate_single_turn = synthetic_completions(tokenizer, trainer.max_completion_length)
    model.train()
    torch.manual_seed(0)
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    batch = dict(trainer._buffered_inputs[0])
    mask = batch["completion_mask"].float()
    batch["old_per_token_logps"] = (
        batch["old_per_token_logps"] + 0.15 * torch.randn(mask.shape, generator=generator) * mask
    )
    trainer.current_gradient_accumulation_steps = 1
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return trainer, tokenizer, batch, loss.item(), grads, metrics


def rows_of(batch, tokenizer, length: int) -> dict:
    keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
    return graphed_step.layout(*(batch[k] for k in keys), tokenizer.pad_token_id, length)


def graphed_loss(trainer, tokenizer, batch, length: int):
    model = trainer.model
    rows = rows_of(batch, tokenizer, length)
    hidden = model(
        input_ids=rows["input_ids"], position_ids=rows["position_ids"], output_hidden_states=True
    ).hidden_states[-1]
    new = graphed_step.completion_logps(
        hidden, model.get_output_embeddings().weight, rows["predictor"], rows["targets"], trainer.temperature
    )
    return graphed_step.grpo_loss(
        new,
        batch["old_per_token_logps"],
        batch["ref_per_token_logps"],
        batch["advantages"],
        rows["mask"],
        trainer.beta,
        trainer.epsilon_low,
        trainer.epsilon_high,
        trainer.args.use_bias_correction_kl,
    )


@pytest.mark.parametrize("extra", [0, 32], ids=["tightest-rows", "one-more-bucket"])
def test_the_fixed_shape_step_gives_trls_loss_and_gradients(trl_step, extra):
    trainer, tokenizer, batch, trl_loss, trl_grads, _ = trl_step
    width = batch["prompt_ids"].size(1) + batch["completion_ids"].size(1)
    trainer.model.zero_grad(set_to_none=True)
    loss, _ = graphed_loss(trainer, tokenizer, batch, graphed_step.row_length(width) + extra)
    loss.backward()
    assert loss.item() == pytest.approx(trl_loss, abs=1e-5)
    for name, p in trainer.model.named_parameters():
        if p.requires_grad:
            assert (p.grad - trl_grads[name]).norm() <= 1e-3 * trl_grads[name].norm() + 1e-8, name


def test_its_statistics_are_the_ones_trl_logs(trl_step):
    trainer, tokenizer, batch, _, _, metrics = trl_step
    width = batch["prompt_ids"].size(1) + batch["completion_ids"].size(1)
    with torch.no_grad():
        _, stats = graphed_loss(trainer, tokenizer, batch, graphed_step.row_length(width))
    kl, low, high, region, low_min, high_max = stats.tolist()
    assert kl == pytest.approx(metrics["kl"], rel=1e-4, abs=1e-7)
    assert region == pytest.approx(metrics["clip_ratio/region_mean"], abs=1e-6)
    assert low == pytest.approx(metrics["clip_ratio/low_mean"], abs=1e-6)
    assert high == pytest.approx(metrics["clip_ratio/high_mean"], abs=1e-6)
    assert low_min == pytest.approx(metrics["clip_ratio/low_min"], abs=1e-6)
    assert high_max == pytest.approx(metrics["clip_ratio/high_max"], abs=1e-6)
    assert region > 0  # the perturbed old log-probs clip some tokens: the comparison is not of zeros


@pytest.mark.parametrize("width, length", [(60, 64), (64, 64), (65, 96), (456, 480)])
def test_row_lengths_come_in_steps_of_32(width, length):
    assert graphed_step.row_length(width) == length


def test_rows_are_left_aligned_with_their_completion_tokens_predicted_from_the_token_before():
    prompt_ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    completion_ids = torch.tensor([[11, 12, 0], [13, 0, 0]])
    completion_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    rows = graphed_step.layout(prompt_ids, prompt_mask, completion_ids, completion_mask, pad_id=0, length=8)
    assert rows["input_ids"].tolist() == [[5, 6, 11, 12, 0, 0, 0, 0], [7, 8, 9, 10, 13, 0, 0, 0]]
    assert rows["position_ids"].tolist() == [list(range(8))] * 2
    assert rows["predictor"][0, :2].tolist() == [1, 2]  # row 0: token 11 at 2 is predicted from 1
    assert rows["predictor"][1, :1].tolist() == [8 + 3]  # row 1 starts at 8 in the flattened rows


def test_a_run_through_the_fixed_shape_step_trains_the_adapter_trls_step_trains(tiny_assets, tmp_path, monkeypatch):
    """Four steps from one generation (spg 4): both runs score the same rollouts, so their adapters must agree."""
    from conftest import lora, train_tiny

    settings = (
        "--set",
        "training.max_steps=4",
        "--set",
        "training.steps_per_generation=4",
        "--set",
        "training.beta=0.04",
    )
    assert train_tiny(tiny_assets, tmp_path / "eager", *settings, "--set", "training.cuda_graphs=false") == 0
    assert train_tiny(tiny_assets, tmp_path / "fixed", *settings) == 0
    eager, fixed = lora(tmp_path / "eager", "adapter"), lora(tmp_path / "fixed", "adapter")
    assert eager.keys() == fixed.keys()
    moved = sum(float(eager[k].double().norm() ** 2) for k in eager if "lora_B" in k) ** 0.5
    differ = sum(float((eager[k].double() - fixed[k].double()).norm() ** 2) for k in eager) ** 0.5
    assert moved > 0 and differ < 1e-3 * moved


def test_completions_padded_to_the_length_cap_give_the_same_loss_and_gradients(trl_step):
    """What a CUDA graph replays: every batch's completions padded to max_completion_length, masked."""
    trainer, tokenizer, batch, _, _, _ = trl_step
    step = graphed_step.Step(trainer, unsloth=False, capture=False)
    width = batch["prompt_ids"].size(1) + batch["completion_ids"].size(1)
    rows = rows_of(batch, tokenizer, graphed_step.row_length(width))
    rows |= {
        "old": batch["old_per_token_logps"],
        "ref": batch["ref_per_token_logps"],
        "advantages": batch["advantages"],
    }
    cap = batch["completion_ids"].size(1) + 7
    wide = graphed_step.padded(rows, cap)
    assert wide["targets"].size(1) == wide["old"].size(1) == cap
    (loss, stats, grads), (wide_loss, wide_stats, wide_grads) = (step.compute(trainer.model, r) for r in (rows, wide))
    assert wide_loss.item() == pytest.approx(loss.item(), abs=1e-6)
    assert torch.allclose(wide_stats, stats, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, wide_grads))


def step_rows(batch, tokenizer, old=None):
    width = batch["prompt_ids"].size(1) + batch["completion_ids"].size(1)
    length = graphed_step.row_length(width)
    rows = rows_of(batch, tokenizer, length)
    old = batch["old_per_token_logps"] if old is None else old
    return length, rows | {"old": old, "ref": batch["ref_per_token_logps"], "advantages": batch["advantages"]}


@pytest.mark.parametrize(
    "spoil, finite",
    [
        pytest.param(None, True, id="as-trl-built-it"),
        pytest.param(float("nan"), False, id="a-nan-old-log-prob"),
        pytest.param(float("inf"), False, id="an-infinite-old-log-prob"),
    ],
)
def test_each_step_says_whether_its_loss_and_gradients_are_finite(trl_step, spoil, finite):
    trainer, tokenizer, batch, _, _, _ = trl_step
    old = batch["old_per_token_logps"].clone()
    if spoil is not None:
        old[0, 0] = -spoil  # a completion token: every row's first is real
    _, rows = step_rows(batch, tokenizer, old)
    _, stats, _ = graphed_step.Step(trainer, unsloth=False, capture=False).compute(trainer.model, rows)
    assert bool(stats[-1]) is finite
    if finite:  # the largest |new - old| log-prob: the fixture's perturbation of the old ones, not more
        assert 0.0 < float(stats[-2]) < 1.0


@pytest.mark.parametrize(
    "finite, drift, fresh, suspect",
    [
        pytest.param(1.0, 0.2, True, False, id="a-generations-first-step-as-expected"),
        pytest.param(0.0, 0.2, False, True, id="not-finite"),
        pytest.param(1.0, 40.0, True, True, id="far-from-the-policy-that-scored-it"),
        pytest.param(1.0, 40.0, False, False, id="later-steps-may-move-away"),
    ],
)
def test_which_replays_are_redone_without_their_graph(finite, drift, fresh, suspect):
    assert graphed_step.replay_suspect([0.0] * 6 + [drift, finite], fresh) is suspect


@pytest.mark.parametrize(
    "replayed, eager, at_fault",
    [
        pytest.param((0.0, 0.1), (1.0, 0.1), True, id="it-alone-not-finite"),
        pytest.param((1.0, 30.0), (1.0, 0.1), True, id="it-alone-far-off"),
        pytest.param((1.0, 30.0), (1.0, 30.0), False, id="the-inputs-far-off"),
        pytest.param((0.0, 0.1), (0.0, 0.1), False, id="not-finite-either-way"),
    ],
)
def test_a_graph_is_dropped_only_where_it_not_its_inputs_went_wrong(replayed, eager, at_fault):
    def values(finite, drift):  # Step.compute's statistics: TRL's six, then the largest |new - old|, then finite
        return [0.0] * 6 + [drift, finite]

    assert graphed_step.graph_at_fault(values(*replayed), values(*eager)) is at_fault


@pytest.mark.parametrize("inputs_at_fault", [False, True], ids=["the-graph-went-wrong", "an-old-log-prob-far-off"])
def test_a_suspect_replay_is_redone_without_its_graph(trl_step, capsys, inputs_at_fault):
    """What a replay that read memory no longer its own leaves: the step recomputed from the same inputs, with
    TRL's loss and gradients, a line saying so, and that row length's graph dropped, to be captured anew; kept
    where the eager step finds the same gap, which is then the inputs', not the graph's."""
    trainer, tokenizer, batch, trl_loss, trl_grads, _ = trl_step
    step = graphed_step.Step(trainer, unsloth=False, capture=False)
    step.capture, step.grads = True, [torch.zeros_like(p) for p in step.params]
    old = batch["old_per_token_logps"].clone()
    if inputs_at_fault:
        old[0, 0] -= 30.0
    length, rows = step_rows(batch, tokenizer, old)
    step.last, step.graphs[length] = (length, graphed_step.padded(rows, trainer.max_completion_length)), "graph"
    loss, values, grads = step.recover(trainer.model, [0.0] * 6 + [30.5, float(inputs_at_fault)])
    assert (length in step.graphs) is inputs_at_fault and step.recovered == 1
    said = capsys.readouterr().out
    assert f"graph of {length}-token rows gave a suspect step" in said and "old finite, ref finite" in said
    assert ("graph kept" if inputs_at_fault else "graph dropped") in said
    if inputs_at_fault:
        return
    assert loss.item() == pytest.approx(trl_loss, abs=1e-5) and values[-1] == 1.0
    named = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    for name, g in zip(named, grads):
        assert (g - trl_grads[name]).norm() <= 1e-3 * trl_grads[name].norm() + 1e-8, name


def test_each_graph_keeps_the_rope_tables_it_reads():
    """Unsloth's rotary module holds its cos/sin tables in per-device lists; those are what a graph keeps alive."""
    cos, sin = torch.ones(4, 2), torch.zeros(4, 2)
    rotary = torch.nn.Module()
    rotary.multi_gpu_cos_cached, rotary.multi_gpu_sin_cached = [cos, None], [sin, None]
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(rotary))
    tables = graphed_step.rope_tables(model)
    assert len(tables) == 2 and tables[0] is cos and tables[1] is sin
    assert graphed_step.rope_tables(torch.nn.Linear(2, 2)) == []  # TRL's models: nothing to keep


def test_unsloths_wider_old_and_reference_columns_are_lined_up_with_the_completion():
    """Unsloth scores left-packed rows: its log-probs are width + the largest left pad wide, row i's
    completion starting at (largest left pad - its own)."""
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    narrow = torch.arange(9.0).view(3, 3) + 1
    left_pad, widest = [2, 0, 1], 2
    wide = torch.full((3, 3 + widest), -99.0)
    for i, pad in enumerate(left_pad):
        wide[i, widest - pad : widest - pad + 3] = narrow[i]
    assert torch.equal(graphed_step.completion_columns(wide, prompt_mask, 3), narrow)
    assert graphed_step.completion_columns(narrow, prompt_mask, 3) is narrow  # TRL's: already lined up
    assert graphed_step.completion_columns(None, prompt_mask, 3) is None


@pytest.mark.parametrize(
    "change, reason",
    [
        pytest.param(lambda t: setattr(t, "loss_type", "dapo"), "loss_type dapo", id="another-loss"),
        pytest.param(
            lambda t: setattr(t.args, "gradient_accumulation_steps", 2), "gradient accumulation", id="accumulation"
        ),
        pytest.param(
            lambda t: setattr(type(t.model), "is_gradient_checkpointing", property(lambda self: True)),
            "gradient checkpointing",
            id="checkpointing",
        ),
        pytest.param(lambda t: setattr(t, "num_iterations", 2), "num_iterations > 1", id="iterations"),
        pytest.param(
            lambda t: setattr(t.model.config, "final_logit_softcapping", 30.0),
            "logit softcapping, scaling or an LM-head bias",
            id="gemma-softcapping",
        ),
        pytest.param(
            lambda t: os.environ.__setitem__("UNSLOTH_GRPO_LOSS_AGGREGATION", "prompt"),
            "Unsloth's GRPO loss options UNSLOTH_GRPO_LOSS_AGGREGATION",
            id="unsloth-per-prompt-loss",
        ),
        pytest.param(
            lambda t: os.environ.__setitem__("UNSLOTH_VLLM_FP32_LM_HEAD", "1"),
            "Unsloth's GRPO loss options UNSLOTH_VLLM_FP32_LM_HEAD",
            id="unsloth-fp32-head",
        ),
        # TRL's step multiplies the loss by vLLM's importance-sampling ratio, which this step leaves out.
        pytest.param(
            lambda t: (setattr(t, "use_vllm", True), setattr(t, "vllm_importance_sampling_correction", True)),
            "vLLM importance sampling",
            id="vllm-importance-sampling",
        ),
        # vLLM without the correction is the same loss: the step still takes it.
        pytest.param(
            lambda t: (setattr(t, "use_vllm", True), setattr(t, "vllm_importance_sampling_correction", False)),
            None,
            id="vllm-without-the-correction",
        ),
    ],
)
def test_settings_it_does_not_cover_keep_trls_step(trl_step, change, reason, monkeypatch):
    trainer = trl_step[0]
    assert graphed_step.declines(trainer) is None
    patched = type("Patched", (type(trainer.model),), {})
    monkeypatch.setattr(trainer.model, "__class__", patched)
    monkeypatch.setattr(trainer.args, "gradient_accumulation_steps", trainer.args.gradient_accumulation_steps)
    monkeypatch.setattr(trainer, "loss_type", trainer.loss_type)
    monkeypatch.setattr(trainer, "num_iterations", trainer.num_iterations)
    monkeypatch.setattr(trainer.model.config, "final_logit_softcapping", None, raising=False)
    monkeypatch.setenv("UNSLOTH_GRPO_LOSS_AGGREGATION", "")  # unset as Unsloth reads it; put back after the test
    monkeypatch.setenv("UNSLOTH_VLLM_FP32_LM_HEAD", "0")
    monkeypatch.setattr(trainer, "use_vllm", trainer.use_vllm)
    monkeypatch.setattr(trainer, "vllm_importance_sampling_correction", trainer.vllm_importance_sampling_correction)
    change(trainer)
    assert graphed_step.declines(trainer) == reason


@pytest.mark.parametrize(
    "unsloth, four_bit, why",
    [
        pytest.param(True, False, None, id="unsloth-16-bit"),
        pytest.param(False, False, "the trl backend, whose CUDA graphs have never run", id="trl-backend"),
        pytest.param(True, True, "4-bit weights, whose CUDA graphs have never run", id="unsloth-4-bit"),
    ],
)
def test_on_a_gpu_only_unsloths_16_bit_model_is_captured(trl_step, monkeypatch, unsloth, four_bit, why):
    trainer = trl_step[0]
    on_gpu = types.SimpleNamespace(weight=types.SimpleNamespace(is_cuda=True))
    monkeypatch.setattr(trainer.model, "get_output_embeddings", lambda: on_gpu)
    monkeypatch.setattr(graphed_step, "Step", lambda *args: "graphed")
    monkeypatch.setattr(trainer, "training_step", trainer.training_step)  # put back after the test
    assert graphed_step.install(trainer, unsloth, four_bit) == why
    assert (trainer.training_step == "graphed") is (why is None)


@pytest.mark.parametrize(
    "unsloth, counted",
    [
        pytest.param(False, [[1, 1, 1, 0], [1, 1, 0, 0]], id="trl-counts-its-mask"),
        pytest.param(True, [[1, 1, 0, 0], [1, 1, 0, 0]], id="unsloth-drops-an-eos-that-is-the-pad-token"),
    ],
)
def test_the_loss_counts_the_completion_tokens_the_backends_loss_counts(unsloth, counted):
    pad = 0  # Qwen2.5's base models pad with their EOS, <|endoftext|>
    completion_ids = torch.tensor([[5, 6, pad, pad], [7, 8, pad, pad]])
    completion_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])  # TRL's: row 0 ends in EOS, counted
    assert graphed_step.loss_mask(completion_ids, completion_mask, pad, unsloth).tolist() == counted


def test_a_step_not_finite_without_its_graph_either_updates_nothing(trl_step, capsys):
    trainer, tokenizer, batch, _, _, _ = trl_step
    step = graphed_step.Step(trainer, unsloth=False, capture=False)
    step.capture, step.grads = True, [torch.zeros_like(p) for p in step.params]
    old = batch["old_per_token_logps"].clone()
    old[0, 0] = float("nan")
    length, rows = step_rows(batch, tokenizer, old)
    step.last, step.graphs[length] = (length, graphed_step.padded(rows, trainer.max_completion_length)), "graph"
    _, values, grads = step.recover(trainer.model, [0.0] * 6 + [float("nan"), 0.0])
    assert values[-1] == 0.0 and all(int(g.count_nonzero()) == 0 for g in grads)
    assert length in step.graphs and "old NOT finite" in capsys.readouterr().out


@pytest.mark.parametrize("chunk", [7, 4096], ids=["chunks-smaller-than-the-rows", "one-chunk"])
def test_log_probs_made_a_chunk_of_logits_at_a_time_equal_the_plain_ones(monkeypatch, chunk):
    """The frozen head's log-probs without ever holding all logits: the same values and hidden-state gradients."""
    monkeypatch.setattr(graphed_step, "LOGIT_CHUNK", chunk)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 10, 16, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, generator=generator, dtype=torch.float64)
    predictor = torch.randint(0, 30, (3, 8), generator=generator)
    targets = torch.randint(0, 50, (3, 8), generator=generator)
    upstream = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    chunked = graphed_step.completion_logps(hidden, weight, predictor, targets, 0.9)
    (grad,) = torch.autograd.grad((chunked * upstream).sum(), hidden)
    h = hidden.reshape(-1, 16)[predictor.reshape(-1)]
    plain = torch.log_softmax(h @ weight.t() / 0.9, -1).gather(-1, targets.reshape(-1, 1)).view(3, 8)
    (plain_grad,) = torch.autograd.grad((plain * upstream).sum(), hidden)
    assert torch.allclose(chunked.double(), plain, atol=1e-6)  # fp32 log-softmax, as TRL's
    assert torch.allclose(grad, plain_grad, atol=1e-6)


def test_under_autocast_the_chunked_head_runs_in_autocasts_dtype_as_the_plain_one_does():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 6, 16, generator=generator, requires_grad=True)
    weight = torch.randn(40, 16, generator=generator)
    predictor, targets = torch.arange(8).view(2, 4), torch.randint(0, 40, (2, 4), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked = graphed_step.completion_logps(hidden, weight, predictor, targets, 1.0)
        plain = graphed_step.completion_logps(hidden, weight.requires_grad_(), predictor, targets, 1.0)
    assert chunked.dtype == plain.dtype == torch.float32
    assert torch.allclose(chunked, plain, atol=1e-6)  # both from bf16 products: the same rounding


@pytest.mark.parametrize(
    "left_in_eval, trains",
    [
        pytest.param((), False, id="every-module-training-no-walk"),
        pytest.param((0,), True, id="the-model-in-eval"),
        pytest.param((2,), True, id="one-submodule-in-eval"),
    ],
)
def test_each_step_puts_every_module_in_training_mode_walking_the_tree_only_where_one_is_not(left_in_eval, trains):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Dropout(0.5)))
    step = types.SimpleNamespace(modules=[])
    graphed_step.Step.train_mode(step, model)  # lists the modules
    modules = list(model.modules())
    for i in left_in_eval:
        modules[i].training = False
    calls = []
    original = model.train
    model.train = lambda mode=True: calls.append(mode) or original(mode)
    graphed_step.Step.train_mode(step, model)
    assert bool(calls) is trains and all(m.training for m in modules)


def test_a_module_added_since_is_listed_at_the_next_generation():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    step = types.SimpleNamespace(modules=[])
    graphed_step.Step.train_mode(step, model)
    model.append(torch.nn.Dropout(0.5).eval())
    graphed_step.Step.train_mode(step, model, relist=True)
    assert model[1].training


def test_a_new_model_has_its_own_modules_listed():
    step = types.SimpleNamespace(modules=[])
    first, second = torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2))
    graphed_step.Step.train_mode(step, first)
    second.eval()
    graphed_step.Step.train_mode(step, second)
    assert step.modules[0] is second and all(m.training for m in second.modules())


class FakeVLLMGeneration:
    """TRL's VLLMGeneration as the trainer calls it: logprobs go into SamplingParams, where the user's
    generation_kwargs override them (trl/generation/vllm_generation.py 662-672)."""

    def __init__(self, generation_kwargs):
        self.logprobs, self.generation_kwargs, self.asked = 0, generation_kwargs, []

    def sync_weights(self):
        pass

    def generate(self, prompts, images, num_generations, profiler):
        asked = {"logprobs": self.logprobs, **self.generation_kwargs}["logprobs"]
        self.asked.append(asked)
        completions = [[5, 6, 7] for _ in prompts for _ in range(num_generations)]
        logprobs = None if asked is None else [[[-0.5]] * 3 for _ in completions]
        return prompts, completions, logprobs, None


@pytest.mark.parametrize(
    "generation_kwargs, asked, sampled",
    [
        pytest.param({"detokenize": False}, None, [], id="none-asked-an-empty-list-a-sequence"),
        pytest.param({"logprobs": 2}, 2, [-0.5] * 3, id="the-users-logprobs-kept"),
    ],
)
def test_vllm_is_asked_for_no_sampled_token_log_probs_where_the_step_reads_none(
    trl_step, monkeypatch, generation_kwargs, asked, sampled
):
    from trl import GRPOTrainer

    trainer = trl_step[0]
    generation = FakeVLLMGeneration(generation_kwargs)
    graphed_step.unasked_sampled_logprobs(generation)
    monkeypatch.setattr(trainer, "use_vllm", True, raising=False)
    monkeypatch.setattr(trainer, "vllm_generation", generation, raising=False)
    monkeypatch.setattr(trainer, "_last_loaded_step", trainer.state.global_step, raising=False)
    # TRL's own sampler (the fixture replaced the instance's), through the vLLM branch
    completion_ids, logprobs = GRPOTrainer._generate_single_turn(trainer, [[1, 2]], None, {}, 2)
    assert generation.asked == [asked] and completion_ids == [[5, 6, 7]] * 2
    assert logprobs == [sampled] * 2


def test_installing_the_step_stops_asking_vllm_for_sampled_token_log_probs(trl_step, monkeypatch):
    trainer = trl_step[0]
    generation = FakeVLLMGeneration({"detokenize": False})
    monkeypatch.setattr(trainer, "vllm_generation", generation, raising=False)
    monkeypatch.setattr(trainer, "training_step", trainer.training_step)
    assert graphed_step.install(trainer, unsloth=False) is None
    assert generation.logprobs is None and "generate" in vars(generation)


@pytest.mark.parametrize(
    "beta, kl_logged",
    [
        pytest.param(0.04, [1.0], id="beta-on-logs-the-kl"),
        pytest.param(0.0, None, id="beta-0-logs-no-kl"),
    ],
)
def test_each_clip_ratio_metric_gets_its_own_value(beta, kl_logged):
    """The step's values come as one tensor in a fixed order: distinct values show a swapped pair of names."""
    trainer = types.SimpleNamespace(beta=beta, _metrics={"train": defaultdict(list)})
    graphed_step.Step.log(types.SimpleNamespace(trainer=trainer), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    metrics = dict(trainer._metrics["train"])
    assert metrics.pop("kl", None) == kl_logged
    assert metrics == {
        "clip_ratio/low_mean": [2.0],
        "clip_ratio/high_mean": [3.0],
        "clip_ratio/region_mean": [4.0],
        "clip_ratio/low_min": [5.0],
        "clip_ratio/high_max": [6.0],
    }
