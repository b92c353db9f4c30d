"""recipe/graphed_scoring.py against plain eager scoring of the same tiny LoRA model: TRL's own pass for TRL's
layout, and a per-row forward of each row's tokens with its pad-id tokens removed (what Unsloth's packed pass
verifies itself against) for Unsloth's."""

import contextlib
import types

import pytest
import torch
from test_graphed_step import synthetic_completions
from trl.trainer.utils import use_adapter

import train_grpo
from conftest import ROOT
from recipe import graphed_scoring, graphed_step
from recipe.config import load_config

ROLES = [
    pytest.param("policy", id="policy"),
    pytest.param("disabled", id="reference-adapter-disabled"),
    pytest.param("ref", id="reference-trls-ref-adapter"),
]


@pytest.fixture(scope="module")
def scored(tiny_assets, tmp_path_factory):
    """The tiny trainer as build_trainer makes it (Step and Scoring installed), its adapter moved off zero, and
    one generation's buffered step batches, scored through Scoring."""
    overrides = [
        f"model.name={tiny_assets / 'model'}",
        f"data.dataset={tiny_assets / 'data' / 'train.jsonl'}",
        f"output.dir={tmp_path_factory.mktemp('scoring')}",
        "training.num_generations=6",
        "training.steps_per_generation=4",
        "training.beta=0.04",
        "training.temperature=0.9",
        "training.max_completion_length=24",
    ]
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), overrides)
    prepared = train_grpo.prepare(cfg, None, False)
    model, tokenizer = train_grpo.load_model(cfg, prepared.backend, prepared.tokenizer)
    trainer = train_grpo.build_trainer(cfg, prepared.backend, model, tokenizer, prepared.dataset, prepared.grpo_config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # PEFT starts B at zero: the policy would equal the reference
        for name, p in model.named_parameters():
            if "lora_B.default" in name:  # the policy's; TRL's "ref" adapter keeps the start (the base model)
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
    trainer._generate_single_turn = synthetic_completions(tokenizer, trainer.max_completion_length, pad_id_every=3)
    model.train()
    torch.manual_seed(0)
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    return trainer, [dict(batch) for batch in trainer._buffered_inputs]


def rows_of(batch):
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    return input_ids, attention_mask, batch["completion_ids"].size(1)


def whole_generation(batches):
    """The generation's rows as TRL scored them: every step batch's, prompts padded on the left to the widest and
    completions on the right (0 is the tiny tokenizer's pad id, and a mask's off)."""

    def widened(key, width):
        return [
            torch.nn.functional.pad(
                b[key], (width - b[key].size(1), 0) if key.startswith("prompt") else (0, width - b[key].size(1))
            )
            for b in batches
        ]

    prompt = max(b["prompt_ids"].size(1) for b in batches)
    completion = max(b["completion_ids"].size(1) for b in batches)
    return {
        key: torch.cat(widened(key, prompt if key.startswith("prompt") else completion))
        for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
    }


def trls_own(trainer, *call):
    with torch.no_grad():
        return trainer._get_per_token_logps_and_entropies.original(trainer.model, *call)[0]


def scored_by_it(trainer, *call):
    with torch.no_grad():
        return trainer._get_per_token_logps_and_entropies(trainer.model, *call)[0]


def per_row_without_pad_ids(trainer, input_ids, width: int):
    """Unsloth's ground truth (unsloth/models/rl_replacements.py 2954-3005): each row's non-pad tokens alone,
    positions from 0, in its columns of [rows, width + the largest left pad]."""
    pad_id = trainer.processing_class.pad_token_id
    left_pad = (input_ids[:, :-width] == pad_id).sum(1)
    wide = width + int(left_pad.max())
    out = torch.zeros(input_ids.size(0), wide)
    prompt_width = input_ids.size(1) - width
    for i, row in enumerate(input_ids):
        kept = (row != pad_id).nonzero().squeeze(1)
        tokens = row[kept].unsqueeze(0)
        logits = trainer.model(input_ids=tokens, position_ids=torch.arange(tokens.size(1)).unsqueeze(0)).logits
        logps = torch.log_softmax(logits[0, :-1].float() / trainer.temperature, -1).gather(-1, tokens[0, 1:, None])
        prompt_len = prompt_width - int(left_pad[i])
        for j in range(prompt_len, tokens.size(1)):  # packed position j: completion token j - prompt_len
            out[i, int(left_pad.max()) - int(left_pad[i]) + j - prompt_len] = logps[j - 1, 0]
    return out


def as_unsloth(trainer, monkeypatch):
    """Scoring as it runs under Unsloth: its masks and layout, with the tiny model's hidden states taken the plain
    way (Unsloth's forward would hand them back as .logits)."""
    step = trainer.training_step
    monkeypatch.setattr(step, "unsloth", True)
    monkeypatch.setattr(
        step, "hidden", lambda model, rows: graphed_step.Step.hidden(types.SimpleNamespace(unsloth=False), model, rows)
    )


def adapter(trainer, role: str):
    """The policy, or the reference as Unsloth (disable_adapter()) or TRL (its "ref" adapter) scores it."""
    if role == "policy":
        return contextlib.nullcontext()
    return use_adapter(trainer.accelerator.unwrap_model(trainer.model), None if role == "disabled" else role)


def test_build_trainer_routes_scoring_through_it(scored):
    trainer, _ = scored
    scoring = trainer._get_per_token_logps_and_entropies
    assert isinstance(scoring, graphed_scoring.Scoring)
    # The counters are the module fixture's, which other tests also score through: count one generation's
    # calls here, whatever ran before, rather than the totals.
    before = scoring.scored, scoring.fell_back
    trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    # The generation's policy and reference passes, both through it.
    assert (scoring.scored - before[0], scoring.fell_back - before[1]) == (2, 0)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("step_batch", [0, 3], ids=["first-step-batch", "last-step-batch"])
def test_its_log_probs_are_trls_own_in_trls_layout(scored, role, step_batch):
    trainer, batches = scored
    batch = batches[step_batch]
    call = rows_of(batch)
    with adapter(trainer, role):
        ours, trls = scored_by_it(trainer, *call), trls_own(trainer, *call)
    mask = batch["completion_mask"].bool()
    assert ours.shape == trls.shape
    assert torch.allclose(ours[mask], trls[mask], atol=1e-5)
    assert not ours[~mask].any()


def test_the_generations_buffered_old_and_reference_log_probs_came_from_it(scored):
    """What the Step reads in ``inputs``: each step batch's old and reference log-probs, TRL's own values."""
    trainer, batches = scored
    for batch in batches:
        mask = batch["completion_mask"].bool()
        for key, role in [("old_per_token_logps", "policy"), ("ref_per_token_logps", "ref")]:
            with adapter(trainer, role):
                trls = trls_own(trainer, *rows_of(batch))
            assert torch.allclose(batch[key][mask], trls[mask], atol=1e-5), key
    old, ref = batches[0]["old_per_token_logps"], batches[0]["ref_per_token_logps"]
    assert (old - ref).abs().max() > 1e-3  # the adapter moved: the two are not one pass twice


@pytest.mark.parametrize("role", ROLES)
def test_under_unsloth_its_log_probs_are_unsloths_per_row_ones_in_unsloths_columns(scored, monkeypatch, role):
    trainer, batches = scored
    as_unsloth(trainer, monkeypatch)
    generation = whole_generation(batches)
    input_ids, attention_mask, width = rows_of(generation)
    pad_id = trainer.processing_class.pad_token_id
    ends_in_pad = (generation["completion_ids"] == pad_id) & generation["completion_mask"].bool()
    assert ends_in_pad.any()  # pad-id EOS tokens are in the test
    assert len(set((generation["prompt_mask"].sum(1) + generation["completion_mask"].sum(1)).tolist())) > 2
    with adapter(trainer, role), torch.no_grad():
        ours = scored_by_it(trainer, input_ids, attention_mask, width)
        truth = per_row_without_pad_ids(trainer, input_ids, width)
    assert ours.shape == truth.shape and ours.size(1) > width  # prompts of several lengths: left pads
    assert torch.allclose(ours, truth, atol=1e-5)
    back = graphed_step.completion_columns(ours, generation["prompt_mask"], width)
    assert not back[ends_in_pad].any()  # a pad-id EOS: no log-prob, as Unsloth's pass gives none


def test_unsloths_columns_are_the_ones_the_step_reads_back():
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    logps = torch.arange(1.0, 10.0).view(3, 3)
    wide = graphed_scoring.unsloth_columns(logps, (1 - prompt_mask).sum(1), 2)
    assert wide.shape == (3, 5)
    assert torch.equal(graphed_step.completion_columns(wide, prompt_mask, 3), logps)


@pytest.mark.parametrize(
    "input_ids, attention_mask, agrees",
    [
        pytest.param([[0, 5, 6, 7, 0, 0]], [[0, 1, 1, 1, 0, 0]], True, id="left-and-right-pads"),
        pytest.param([[5, 6, 7, 0, 0]], [[1, 1, 1, 1, 0]], True, id="a-pad-id-eos"),
        pytest.param([[5, 6, 9, 9, 0]], [[1, 1, 0, 0, 0]], True, id="masked-tokens-after-the-last-real-one"),
        pytest.param([[5, 0, 7, 8]], [[1, 1, 1, 1]], False, id="a-pad-id-token-mid-row"),
        pytest.param([[5, 9, 7, 8]], [[1, 0, 1, 1]], False, id="a-masked-token-mid-row"),
    ],
)
def test_rows_unsloths_packing_would_lay_out_otherwise_are_left_to_it(input_ids, attention_mask, agrees):
    assert bool(graphed_scoring.packing_agrees(torch.tensor(input_ids), torch.tensor(attention_mask), 0)) is agrees


def test_another_row_length_takes_another_path_without_error(scored):
    """A longer prompt width moves the rows to the next 32-token length: on a CPU computed eagerly, the same."""
    trainer, batches = scored
    input_ids, attention_mask, width = rows_of(batches[0])
    wider_ids = torch.nn.functional.pad(input_ids, (40, 0), value=trainer.processing_class.pad_token_id)
    wider_mask = torch.nn.functional.pad(attention_mask, (40, 0))
    step = trainer.training_step
    assert step.row_length(wider_ids.size(1)) > step.row_length(input_ids.size(1))
    narrow = scored_by_it(trainer, input_ids, attention_mask, width)
    wide = scored_by_it(trainer, wider_ids, wider_mask, width)
    assert torch.allclose(narrow, wide, atol=1e-5) and not step.scoring_graphs


@pytest.mark.parametrize(
    "call, reason",
    [
        pytest.param({"grad": True}, "a pass with gradients (a loss's)", id="a-loss-pass"),
        pytest.param({"compute_entropy": True}, "arguments beyond the text rows: compute_entropy", id="entropy"),
        pytest.param(
            {"compute_efficient": True}, "arguments beyond the text rows: compute_efficient", id="unsloth-efficient"
        ),
        pytest.param({"pixel_values": torch.zeros(1)}, "arguments beyond the text rows: pixel_values", id="images"),
        pytest.param({"model": "another"}, "another model", id="a-separate-reference-model"),
    ],
)
def test_calls_it_does_not_cover_go_to_the_pass_it_replaced(scored, monkeypatch, capsys, call, reason):
    trainer, batches = scored
    scoring = trainer._get_per_token_logps_and_entropies
    model = torch.nn.Linear(1, 1) if call.pop("model", None) else trainer.model
    grad = call.pop("grad", False)
    seen = []
    monkeypatch.setattr(scoring, "original", lambda *args, **kwargs: seen.append(kwargs) or ("theirs", None, None))
    monkeypatch.setattr(scoring, "said", set())
    with torch.set_grad_enabled(grad):
        assert scoring.declines(model, (), call) == reason
        assert scoring(model, *rows_of(batches[0]), **call)[0] == "theirs"
    assert seen == [call] and reason in capsys.readouterr().out


def test_a_log_prob_that_is_not_finite_goes_to_the_pass_it_replaced(scored, monkeypatch, capsys):
    trainer, batches = scored
    scoring = trainer._get_per_token_logps_and_entropies
    call = rows_of(batches[0])
    monkeypatch.setattr(scoring, "compute", lambda model, rows: (rows["mask"] * float("nan"), torch.tensor(False)))
    with torch.no_grad():
        logps = scoring(trainer.model, *call)[0]
    assert torch.isfinite(logps).all()
    assert torch.equal(logps, trls_own(trainer, *call))
    assert "(a log-prob that is not finite)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, reason",
    [
        pytest.param(lambda t: setattr(t, "num_iterations", 2), "num_iterations > 1", id="the-steps-own-declines"),
        pytest.param(
            lambda t: (setattr(t, "beta", 0.0), setattr(t.args, "steps_per_generation", 1)),
            "no scoring pass (beta 0, a generation every step)",
            id="beta-0-no-old-log-probs",
        ),
        # Either half alone leaves a scoring pass to take over: old log-probs (several steps per generation) or
        # reference log-probs (beta on).
        pytest.param(lambda t: setattr(t, "beta", 0.0), None, id="beta-0-but-old-log-probs-for-later-steps"),
        pytest.param(
            lambda t: setattr(t.args, "steps_per_generation", 1), None, id="a-generation-every-step-but-beta-on"
        ),
        pytest.param(lambda t: setattr(t, "ref_model", object()), "a separate reference model", id="reference-model"),
        pytest.param(
            lambda t: setattr(t.model.config, "attention_dropout", 0.1),
            "dropout, which a graph would replay with the same mask",
            id="dropout",
        ),
        pytest.param(
            lambda t: setattr(t.training_step, "unsloth", True),
            "an Unsloth scoring pass without its precision latch (_unsloth_grpo_autocast)",
            id="unsloth-without-its-latch",
        ),
    ],
)
def test_settings_it_does_not_cover_keep_the_trainers_pass(scored, monkeypatch, change, reason):
    trainer = scored[0]
    monkeypatch.setattr(
        trainer, "_get_per_token_logps_and_entropies", trainer._get_per_token_logps_and_entropies.original
    )
    assert graphed_scoring.declines(trainer) is None
    for obj, name in [
        (trainer, "num_iterations"),
        (trainer, "beta"),
        (trainer, "ref_model"),
        (trainer.args, "steps_per_generation"),
        (trainer.model.config, "attention_dropout"),
        (trainer.training_step, "unsloth"),
    ]:
        monkeypatch.setattr(obj, name, getattr(obj, name))
    change(trainer)
    assert graphed_scoring.declines(trainer) == reason


def test_a_graph_that_gave_a_log_prob_not_finite_is_dropped_and_its_pool_let_go(scored, monkeypatch):
    """On a GPU: the graph is captured anew at its next use, in a fresh pool once no graph holds the old one."""
    trainer, batches = scored
    scoring, step = trainer._get_per_token_logps_and_entropies, trainer.training_step
    input_ids, attention_mask, width = rows_of(batches[0])
    key = ("adapter default", trainer.model.training, input_ids.size(0), step.row_length(input_ids.size(1)))
    monkeypatch.setattr(step, "scoring_graphs", {key: "graph"})
    monkeypatch.setattr(step, "pool", "pool")
    monkeypatch.setattr(scoring, "run", lambda model, rows, width: (rows["mask"] / 0.0, torch.tensor(False)))
    with torch.no_grad():
        scoring(trainer.model, input_ids, attention_mask, width)
    assert not step.scoring_graphs and step.pool is None


def test_the_steps_pool_stays_while_a_scoring_graph_holds_it(scored, monkeypatch):
    step = scored[0].training_step
    monkeypatch.setattr(step, "scoring_graphs", {("base", True, 24, 64): "graph"})
    monkeypatch.setattr(step, "pool", "pool")
    step.release_pool()
    assert step.pool == "pool" and not step.graphs


def shifted(scoring, nats: float, where: str = "counted"):
    """Scoring's compute with its log-probs moved by ``nats`` on the tokens the loss counts, or on the others."""
    compute = scoring.compute

    def moved(model, rows):
        logps, finite = compute(model, rows)
        mask = rows["mask"] if where == "counted" else 1 - rows["mask"]
        return logps + nats * mask, finite

    return moved


@pytest.fixture
def fresh(scored, monkeypatch):
    """The trainer's Scoring with no audit behind it, and a count of the replaced pass's calls."""
    trainer, batches = scored
    scoring = trainer._get_per_token_logps_and_entropies
    for name, empty in (("uses", {}), ("strikes", {}), ("distrusted", set()), ("said", set()), ("scored", 0)):
        monkeypatch.setattr(scoring, name, empty)
    calls = []
    original = scoring.original
    monkeypatch.setattr(scoring, "original", lambda *a, **k: calls.append(1) or original(*a, **k))
    return trainer, batches, scoring, calls


def score_times(trainer, scoring, call, times: int) -> list:
    with torch.no_grad():
        return [scoring(trainer.model, *call)[0] for _ in range(times)]


@pytest.mark.parametrize(
    "nats, where, outcome",
    [
        pytest.param(0.0, "counted", "kept", id="equal"),
        pytest.param(0.5, "counted", "kept", id="within-kernel-noise"),
        pytest.param(5.0, "uncounted", "kept", id="off-only-where-the-loss-reads-nothing"),
        pytest.param(1.0, "counted", "strike", id="between-the-bands-a-strike"),
        pytest.param(2.0, "counted", "distrusted", id="past-the-bands"),
        pytest.param(float("inf"), "counted", "distrusted", id="infinite"),
        pytest.param(float("nan"), "counted", "distrusted", id="nan"),
    ],
)
def test_a_graphs_first_two_scorings_are_audited_against_the_pass_it_replaces(
    fresh, monkeypatch, capsys, nats, where, outcome
):
    trainer, batches, scoring, calls = fresh
    call = rows_of(batches[0])
    monkeypatch.setattr(scoring, "compute", shifted(scoring, nats, where))
    first, second = score_times(trainer, scoring, call, 2)
    audits = len(calls)  # where the rows are left to the replaced pass, its calls
    theirs = trls_own(trainer, *call)
    said = capsys.readouterr().out
    assert audits == 2 and (scoring.key in scoring.distrusted) is (outcome == "distrusted")
    if outcome == "kept":  # its own values; the first audit says how close they came
        assert (not torch.equal(first, theirs) or nats == 0.0) and scoring.scored == 2
        assert said.count("nats of the trainer's own pass") == 1
    else:  # the replaced pass's values, saying why
        assert torch.equal(first, theirs) and torch.equal(second, theirs) and scoring.scored == 0
        assert ("1 of 3 strikes" in said and "2 of 3 strikes" in said) is (outcome == "strike")
        assert ("from now on" in said and "failed an audit" in said) is (outcome == "distrusted")


def test_three_strikes_in_a_row_leave_the_rows_to_the_pass_it_replaced_and_a_pass_clears_them(fresh, monkeypatch):
    trainer, batches, scoring, calls = fresh
    call = rows_of(batches[0])
    compute = scoring.compute
    monkeypatch.setattr(scoring, "compute", shifted(scoring, 1.0))
    score_times(trainer, scoring, call, 2)
    monkeypatch.setattr(scoring, "compute", compute)
    score_times(trainer, scoring, call, 1)  # audited again while it has strikes: agrees, cleared
    assert not scoring.strikes and scoring.key not in scoring.distrusted
    monkeypatch.setattr(scoring, "compute", shifted(scoring, 1.0))
    score_times(trainer, scoring, call, 3)
    assert scoring.key in scoring.distrusted


def test_audits_come_again_every_audit_every_scorings(fresh, monkeypatch):
    trainer, batches, scoring, calls = fresh
    monkeypatch.setattr(graphed_scoring, "AUDIT_EVERY", 3)
    score_times(trainer, scoring, rows_of(batches[0]), 7)
    assert len(calls) == 4  # its first two scorings, and its 3rd and 6th after them
    assert scoring.scored == 7


def test_each_role_has_its_own_audits(fresh, monkeypatch):
    # The policy and the reference alternate each generation: a shared count would audit one of them only.
    trainer, batches, scoring, calls = fresh
    monkeypatch.setattr(graphed_scoring, "AUDIT_EVERY", 3)
    call = rows_of(batches[0])
    for _ in range(4):
        score_times(trainer, scoring, call, 1)
        with adapter(trainer, "disabled"):
            score_times(trainer, scoring, call, 1)
    assert len(calls) == 6 and sorted(key[0] for key in scoring.uses) == ["adapter default", "base"]


def test_a_later_audit_that_fails_drops_the_graph_and_leaves_the_rows_to_the_pass_it_replaced(fresh, monkeypatch):
    trainer, batches, scoring, calls = fresh
    step = trainer.training_step
    monkeypatch.setattr(graphed_scoring, "AUDIT_EVERY", 3)
    call = rows_of(batches[0])
    score_times(trainer, scoring, call, 2)  # audited twice, kept
    key = scoring.key
    monkeypatch.setattr(step, "scoring_graphs", {key: "graph"})
    monkeypatch.setattr(step, "pool", "pool")
    monkeypatch.setattr(scoring, "compute", shifted(scoring, 2.0))  # e.g. a table freed under it
    monkeypatch.setattr(scoring, "run", lambda model, rows, width: scoring.compute(model, rows))
    score_times(trainer, scoring, call, 1)  # its 3rd scoring: no audit
    assert step.scoring_graphs and key not in scoring.distrusted
    assert torch.equal(score_times(trainer, scoring, call, 1)[0], trls_own(trainer, *call))  # 4th: audited
    assert key in scoring.distrusted and not step.scoring_graphs and step.pool is None and key not in scoring.uses


def test_a_graph_that_fails_to_capture_leaves_its_rows_to_the_pass_it_replaced(fresh, monkeypatch, capsys):
    trainer, batches, scoring, calls = fresh
    step = trainer.training_step
    monkeypatch.setattr(step, "capture", True)
    monkeypatch.setattr(step, "scoring_graphs", {})

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(step, "record", out_of_memory)
    call = rows_of(batches[0])
    assert torch.equal(score_times(trainer, scoring, call, 1)[0], trls_own(trainer, *call))
    assert scoring.key in scoring.distrusted and not step.scoring_graphs
    assert "its graph failed: OutOfMemoryError: CUDA out of memory" in capsys.readouterr().out


def test_rows_unsloths_packing_would_lay_out_otherwise_capture_nothing(fresh, monkeypatch):
    trainer, batches, scoring, calls = fresh
    step = trainer.training_step
    for name, value in (("capture", True), ("unsloth", True), ("scoring_graphs", {})):
        monkeypatch.setattr(step, name, value)
    monkeypatch.setattr(graphed_scoring, "packing_agrees", lambda *args: torch.tensor(False))
    monkeypatch.setattr(step, "record", lambda *args: pytest.fail("captured rows it then threw away"))
    monkeypatch.setattr(scoring, "autocast_agrees", lambda: True)
    score_times(trainer, scoring, rows_of(batches[0]), 1)
    assert calls == [1] and not step.scoring_graphs


def tiny_base(tiny_assets):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_assets / "model"))


def tiny_peft(tiny_assets, **lora):
    """The tiny model under a LoRA adapter whose B is off zero, so that it changes the output."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_base(tiny_assets), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], **lora))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=generator))
    return model


def logits_of(model):
    with torch.no_grad():
        return model(input_ids=torch.arange(1, 9).unsqueeze(0)).logits


def adapter_state(model):
    layers = graphed_scoring.lora_layers(model)
    return [layer.disable_adapters for layer in layers], [p.requires_grad for p in model.parameters()]


@pytest.mark.parametrize(
    "before",
    [
        pytest.param("enabled", id="adapter-on"),
        pytest.param("one-layer-off", id="one-layer-already-off-stays-off"),
        pytest.param("raises", id="an-error-inside-restores-every-layer"),
    ],
)
@pytest.mark.filterwarnings("ignore:The model contains some adapter layers that are enabled and others")
def test_quick_disable_adapter_is_peft_s_base_model_and_gives_each_layer_back_its_state(tiny_assets, before):
    model = tiny_peft(tiny_assets)
    layers = graphed_scoring.lora_layers(model)
    if before == "one-layer-off":
        layers[0].enable_adapters(False)
    with_adapter, state = logits_of(model), adapter_state(model)
    with type(model).disable_adapter(model):  # PEFT's own
        base = logits_of(model)
    if before == "one-layer-off":  # PEFT's turns every layer back on: put the one back off
        layers[0].enable_adapters(False)
    assert adapter_state(model) == state and not torch.equal(base, with_adapter)
    quick = graphed_scoring.quick_disable_adapter(model, layers)
    with pytest.raises(KeyError) if before == "raises" else contextlib.nullcontext(), quick():
        assert model._adapters_disabled is True
        torch.testing.assert_close(logits_of(model), base, rtol=0, atol=0)
        if before == "raises":
            raise KeyError("inside")
    assert model._adapters_disabled is False
    assert adapter_state(model) == state
    torch.testing.assert_close(logits_of(model), with_adapter, rtol=0, atol=0)


def test_quick_disable_adapter_inside_another_leaves_the_model_disabled(tiny_assets):
    model = tiny_peft(tiny_assets)
    quick = graphed_scoring.quick_disable_adapter(model, graphed_scoring.lora_layers(model))
    with quick():
        base = logits_of(model)
        with quick():
            pass
        assert model._adapters_disabled is True
        torch.testing.assert_close(logits_of(model), base, rtol=0, atol=0)
    assert model._adapters_disabled is False


@pytest.mark.parametrize(
    "lora, quick",
    [
        pytest.param({}, True, id="lora-on-projections"),
        pytest.param({"bias": "lora_only"}, False, id="a-trained-bias-peft-warns-of"),
        pytest.param({"modules_to_save": ["lm_head"]}, False, id="modules-to-save"),
        pytest.param({"trainable_token_indices": [1, 2]}, False, id="trainable-tokens"),
    ],
)
@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True` and a tied layer is part of the adapter")
def test_quick_disable_adapter_takes_only_models_where_peft_just_toggles_lora_layers(tiny_assets, lora, quick):
    assert (graphed_scoring.lora_layers(tiny_peft(tiny_assets, **lora)) is not None) is quick


def test_prompt_learning_keeps_its_own_disable_adapter(tiny_assets):
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(tiny_base(tiny_assets), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    assert graphed_scoring.lora_layers(model) is None


def test_not_a_peft_model_keeps_its_own_disable_adapter(tiny_assets):
    assert graphed_scoring.lora_layers(tiny_base(tiny_assets)) is None


def test_build_trainer_gives_the_reference_the_quick_disable_adapter(scored):
    trainer, _ = scored
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert "disable_adapter" in vars(model)  # the instance's, over PeftModel's
    with pytest.MonkeyPatch.context() as patch:  # PEFT's own asks for the model's status first
        patch.setattr(type(model), "get_model_status", lambda self: pytest.fail("PEFT's disable_adapter ran"))
        with use_adapter(model, None):  # as TRL enters the reference's pass
            assert graphed_scoring.adapters_disabled(model) is True
            assert all(layer.disable_adapters for layer in graphed_scoring.lora_layers(model))
    assert graphed_scoring.adapters_disabled(model) is False
