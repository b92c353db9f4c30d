"""Config: every shipped YAML validates, and bad input fails early with a message naming the fix."""

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

import rewards
import train_grpo
from conftest import tiny_cli, train_tiny
from recipe import runs
from recipe.backend import FOLD_SWITCH, folds_rollouts, import_unsloth, resolve_backend
from recipe.config import LORA_PROJECTIONS, Config, ModelConfig, check_trainer_names, config_to_yaml, load_config
from recipe.errors import RecipeError
from recipe.grpo_config import grpo_args

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([ROOT / "config.yaml", *(ROOT / "configs").glob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=[p.relative_to(ROOT).as_posix() for p in SHIPPED])
def test_shipped_config_loads_and_validates(path):
    cfg = load_config(str(path))
    assert isinstance(cfg, Config)
    check_trainer_names(cfg.training)  # train_grpo checks these after Unsloth's import


# Regressions: a scheduler that needs settings, or an evaluation set the recipe never has, failed after the model
# loaded (or, reduce_lr_on_plateau, as GRPOConfig's traceback).
@pytest.mark.parametrize(
    "overrides, message",
    [
        pytest.param(["training.lr_scheduler_type=linear"], None, id="needs-nothing"),
        pytest.param(
            ["training.lr_scheduler_type=cosine_with_min_lr"],
            "training.lr_scheduler_type=cosine_with_min_lr: transformers refuses it (One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`): set training.trl.lr_scheduler_kwargs, e.g. {min_lr_rate: 0.1}",
            id="min-lr-without-its-setting",
        ),
        pytest.param(
            ["training.lr_scheduler_type=cosine_with_min_lr", "training.trl.lr_scheduler_kwargs={min_lr_rate: 0.1}"],
            None,
            id="min-lr-with-its-setting",
        ),
        pytest.param(
            ["training.lr_scheduler_type=warmup_stable_decay"],
            "missing 1 required positional argument: 'num_decay_steps'): set training.trl.lr_scheduler_kwargs, e.g. {num_decay_steps: 100}",
            id="wsd-without-its-setting",
        ),
        pytest.param(
            ["training.trl.lr_scheduler_kwargs={min_lr: 0.1}"],
            "training.lr_scheduler_type=cosine with training.trl.lr_scheduler_kwargs={'min_lr': 0.1}: transformers refuses it (",
            id="a-setting-the-scheduler-lacks",
        ),
        pytest.param(
            ["training.lr_scheduler_type=reduce_lr_on_plateau"],
            "training.lr_scheduler_type=reduce_lr_on_plateau steps on an evaluation loss, and this recipe trains without an evaluation set: use cosine, linear or constant_with_warmup",
            id="plateau-needs-evaluation",
        ),
        pytest.param(
            ["training.lr_scheduler_type=greedy"], "steps on an evaluation loss", id="greedy-needs-evaluation"
        ),
        # Regressions: 'adamw' suggested grokadamw, of all transformers' optimizers; a scheduler typo listed all 12.
        pytest.param(
            ["training.optim=adamw"],
            "training.optim='adamw': did you mean 'adamw_torch'? The usual ones: adamw_torch_fused, adamw_torch, paged_adamw_8bit",
            id="optimizer-suggests-a-usual-one",
        ),
        pytest.param(
            ["training.optim=sgdd"], "training.optim='sgdd': did you mean 'sgd'? The usual ones: ", id="optimizer-typo"
        ),
        pytest.param(
            ["training.lr_scheduler_type=cosin"],
            "training.lr_scheduler_type='cosin': did you mean 'cosine'?",
            id="scheduler-typo",
        ),
    ],
)
def test_trainer_names_and_their_settings_are_checked_before_the_model_loads(overrides, message):
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), overrides)
    if message is None:
        check_trainer_names(cfg.training)
        return
    with pytest.raises(RecipeError) as error:
        check_trainer_names(cfg.training)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.relative_to(ROOT).as_posix() for p in SHIPPED])
def test_shipped_config_sets_only_known_keys_and_every_reward(path):
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= {"model", "vllm", "lora", "data", "rewards", "training", "output"}
    if "rewards" in raw:
        assert set(raw["rewards"]) <= set(rewards.REWARDS)


@pytest.mark.parametrize(
    "path, load_in_4bit, compile, steps_per_generation, max_steps, epochs, checkpointing, vllm_share, notebook_code",
    [
        pytest.param(
            "configs/notebook-4090.yaml",
            *(True, True, 1, -1, 3.0, "unsloth", 0.59, True),
            id="notebook-code-path-4bit-compiled-22419-steps",
        ),
        pytest.param(
            "config.yaml",
            *(False, False, 4, 1000, 1.0, False, 0.35, False),
            id="default-16bit-generates-for-4-steps-no-checkpointing-1000-steps",
        ),
    ],
)
def test_configs_keep_the_seed_recipe(
    path, load_in_4bit, compile, steps_per_generation, max_steps, epochs, checkpointing, vllm_share, notebook_code
):
    """Both keep the notebook's optimisation (one question x 6 completions per step, its hyperparameters);
    the default only changes how fast a step runs: 16-bit LoRA and one vLLM batch per 4 steps (bench/)."""
    cfg = load_config(str(ROOT / path))
    assert (cfg.model.load_in_4bit, cfg.model.compile, cfg.training.steps_per_generation) == (
        load_in_4bit,
        compile,
        steps_per_generation,
    )
    assert (cfg.training.max_steps, cfg.training.num_train_epochs) == (max_steps, epochs)
    # The notebook's code sets its own context, weight decay and optimizer (configs/notebook-4090.yaml).
    assert (cfg.model.name, cfg.model.max_seq_length) == ("Qwen/Qwen2.5-3B", 1024 if notebook_code else 512)
    assert (cfg.model.fast_inference, cfg.model.gpu_memory_utilization) == (True, vllm_share)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.gradient_checkpointing) == (32, 32, checkpointing)
    assert cfg.lora.target_modules == LORA_PROJECTIONS
    t = cfg.training
    assert (t.learning_rate, t.adam_beta1, t.adam_beta2, t.warmup_ratio) == (5e-6, 0.9, 0.99, 0.1)
    assert (t.lr_scheduler_type, t.max_grad_norm) == ("cosine", 0.1)
    # Fused AdamW (with folded rollouts) passed the learning check against paged 8-bit AdamW (bench/LOG.md, 2026-12-07).
    assert (t.weight_decay, t.optim) == ((0.001, "adamw_8bit") if notebook_code else (0.1, "adamw_torch_fused"))
    assert (t.prompts_per_step, t.num_generations, t.max_completion_length) == (1, 6, 200)
    assert cfg.data.max_prompt_length == 256 and cfg.data.dataset == "openai/gsm8k"
    assert cfg.rewards == {name: 1.0 for name in rewards.REWARDS}


def test_yaml_file_and_dataclass_defaults_agree():
    """config.yaml documents every default; a drift between the two would make one of them lie."""
    assert load_config(str(ROOT / "config.yaml")) == load_config(None)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(str(ROOT / "config.yaml"), ["training.max_steps=7", "lora.gradient_checkpointing=false"])
    saved = tmp_path / "config.yaml"
    saved.write_text(config_to_yaml(cfg))
    assert load_config(str(saved)) == cfg


@pytest.mark.parametrize(
    "override, key, value",
    [
        pytest.param("training.max_steps=500", "training.max_steps", 500, id="int"),
        pytest.param("training.learning_rate=1e-5", "training.learning_rate", 1e-5, id="float-from-yaml-exponent"),
        pytest.param("training.temperature=1", "training.temperature", 1.0, id="int-accepted-as-float"),
        pytest.param(
            "training={max_steps: -1, num_train_epochs: 3}", "training.num_train_epochs", 3.0, id="epochs-without-steps"
        ),
        pytest.param("model.load_in_4bit=true", "model.load_in_4bit", True, id="bool"),
        pytest.param(
            "lora.gradient_checkpointing=true", "lora.gradient_checkpointing", True, id="bool-or-string-as-bool"
        ),
        pytest.param("data.limit=null", "data.limit", None, id="optional-null"),
        pytest.param("lora.target_modules=[q_proj,v_proj]", "lora.target_modules", ["q_proj", "v_proj"], id="list"),
        pytest.param("output.dir=runs/a=b", "output.dir", "runs/a=b", id="value-may-hold-equals-sign"),
        pytest.param(
            "rewards.correctness=2",
            "rewards",
            {**{n: 1.0 for n in rewards.REWARDS}, "correctness": 2.0},
            id="reward-weight",
        ),
    ],
)
def test_override_sets_typed_value(override, key, value):
    cfg = load_config(str(ROOT / "config.yaml"), [override])
    section, _, leaf = key.partition(".")
    got = getattr(getattr(cfg, section), leaf) if leaf else getattr(cfg, section)
    assert got == value


@pytest.mark.parametrize(
    "override, message",
    [
        pytest.param(
            "training.max_stesp=5",
            "unknown config key 'training.max_stesp': did you mean 'training.max_steps'?",
            id="typo-suggests-key",
        ),
        pytest.param("trainig.max_steps=5", "did you mean 'training'?", id="typo-in-section"),
        pytest.param("training.max_steps=abc", "training.max_steps: expected int, got 'abc'", id="wrong-type"),
        pytest.param("training.max_steps=2.5", "training.max_steps: expected int", id="float-for-int"),
        pytest.param("model.load_in_4bit=1", "model.load_in_4bit: expected bool", id="int-for-bool"),
        pytest.param("training=3", "training: expected a mapping", id="section-not-mapping"),
        pytest.param(
            "rewards.correctnes=1",
            "unknown reward 'correctnes' in rewards: did you mean 'rewards.correctness'?",
            id="unknown-reward",
        ),
        pytest.param("rewards.correctness=.nan", "rewards.correctness=nan", id="nan-weight"),
        pytest.param("model.backend=jax", "model.backend='jax': use auto, unsloth or trl", id="bad-backend"),
        pytest.param("model.gpu_memory_utilization=1.5", "model.gpu_memory_utilization=1.5", id="utilization-over-1"),
        pytest.param(
            "data.max_prompt_length=400",
            "exceeds model.max_seq_length=512: raise model.max_seq_length to at least 600",
            id="length-budget",
        ),
        pytest.param("training.num_generations=1", "use at least 2", id="one-generation"),
        pytest.param("training.prompts_per_step=0", "training.prompts_per_step=0", id="no-prompts"),
        pytest.param("training.max_steps=0", "training.max_steps=0", id="zero-steps"),
        pytest.param("training.temperature=0", "training.temperature=0", id="zero-temperature"),
        pytest.param("training.beta=-1", "training.beta=-1", id="negative-kl"),
        # Regressions: both were accepted silently; TRL ignores epochs beside a step count, and zero weights learn nothing.
        pytest.param(
            "training.num_train_epochs=3",
            "training.num_train_epochs=3.0 is ignored while training.max_steps=1000 sets the length of the run: set training.max_steps=-1 to train by epochs, or leave num_train_epochs at 1",
            id="epochs-beside-steps",
        ),
        pytest.param(
            "rewards={correctness: 0}",
            "rewards: every weight is 0, so nothing would be learned: give at least one reward a weight, e.g. rewards.correctness=1",
            id="every-reward-weight-zero",
        ),
        pytest.param("rewards={correctness: 0, xmlcount: 0.0}", "rewards: every weight is 0", id="two-zero-weights"),
        # Regressions: nan failed a sign or range check first, which named the wrong reason ("cannot be negative").
        pytest.param(
            "training.beta=.nan", "training.beta=nan: use a finite number, e.g. the default 0.04", id="nan-kl"
        ),
        pytest.param("training.learning_rate=.nan", "training.learning_rate=nan: use a finite", id="nan-lr"),
        pytest.param("training.temperature=.inf", "training.temperature=inf: use a finite", id="infinite-temperature"),
        pytest.param("training.warmup_ratio=.nan", "training.warmup_ratio=nan: use a finite", id="nan-warmup"),
        pytest.param("training.adam_beta2=.nan", "training.adam_beta2=nan: use a finite", id="nan-adam-beta"),
        pytest.param(
            "model.gpu_memory_utilization=.nan", "model.gpu_memory_utilization=nan: use a finite", id="nan-vllm-share"
        ),
        pytest.param("lora.r=0", "lora.r=0", id="zero-rank"),
        pytest.param("lora.target_modules=[]", "lora.target_modules is empty", id="no-targets"),
        pytest.param("lora.gradient_checkpointing=maybe", "use unsloth, true or false", id="bad-checkpointing"),
        pytest.param("output.save_steps=0", "output.save_steps=0", id="zero-save-steps"),
        pytest.param(
            "output.resume=/no/such/checkpoint", "output.resume='/no/such/checkpoint'", id="missing-checkpoint"
        ),
        pytest.param("training.max_steps", "expected section.key=value", id="override-without-value"),
        # Regressions of issue 30: an empty output.dir crashed after the model loaded, writing config.yaml into the cwd.
        pytest.param("output.dir=", "output.dir is empty: set it to the folder for this run's outputs", id="empty-dir"),
        pytest.param("output.dir=''", "output.dir is empty", id="quoted-empty-dir"),
        pytest.param("data.dataset=", "data.dataset is empty", id="empty-dataset"),
        pytest.param("model.name='  '", "model.name is empty", id="blank-model"),
        # Path('') is '.': an empty output.resume would have resumed from the working directory.
        pytest.param("output.resume=", "output.resume is empty", id="empty-resume"),
        # Regression: "expected str, got True", without the values it takes.
        pytest.param(
            "output.resume=yes",
            "output.resume=True: YAML reads yes, no, true, false, on and off as booleans: use never, auto, or the path of a checkpoint folder",
            id="resume-yes",
        ),
        pytest.param("model.name=3", "model.name=3: set it to a hub id", id="number-for-a-path"),
        pytest.param(
            "output.dir=$NOT_SET_ANYWHERE/x", "environment variable NOT_SET_ANYWHERE is not set", id="unset-var"
        ),
        pytest.param("training={beta: 0, beta: 1}", "key 'beta' is given twice", id="set-key-twice"),
        # Boundaries no row held (a mutation audit): TRL would read a warmup of 1.0 as one step, not the whole run.
        pytest.param("training.warmup_ratio=1", "training.warmup_ratio=1.0: use a fraction in [0, 1)", id="warmup-1"),
        pytest.param("training.warmup_ratio=-0.1", "use a fraction in [0, 1)", id="negative-warmup"),
        pytest.param("training.learning_rate=0", "training.learning_rate=0.0: must be positive", id="zero-lr"),
        pytest.param("data.limit=0", "data.limit=0: use a positive number of questions", id="zero-limit"),
        pytest.param("training.max_steps=true", "training.max_steps: expected int, got True", id="bool-for-int"),
        pytest.param(
            "rewards.correctness=false", "rewards.correctness: expected float, got False", id="bool-for-weight"
        ),
        pytest.param("data.max_prompt_length=0", "data.max_prompt_length=0: must be positive", id="zero-prompt-length"),
        pytest.param(
            "training.max_completion_length=0", "max_completion_length=0: must be positive", id="zero-completion"
        ),
        pytest.param(
            "training.weight_decay=-0.1", "training.weight_decay=-0.1: cannot be negative", id="negative-decay"
        ),
        pytest.param("training.max_grad_norm=-1", "use a positive clipping norm (0 turns", id="negative-clip-norm"),
        pytest.param("training.adam_beta1=1", "training.adam_beta1=1.0: use a value in [0, 1)", id="adam-beta1-1"),
        pytest.param("lora.alpha=0", "lora.alpha=0: both must be positive", id="zero-alpha"),
        pytest.param("output.logging_steps=0", "output.logging_steps=0: must be positive", id="zero-logging-steps"),
        pytest.param(
            "output.save_total_limit=0", "output.save_total_limit=0: must be positive", id="keep-no-checkpoint"
        ),
        pytest.param("output.sample_every=0", "output.sample_every=0: must be positive", id="zero-sample-every"),
        pytest.param("training.seed=4294967296", "use a whole number in [0, 2**32)", id="seed-2-to-the-32"),
        pytest.param("model.gpu_memory_utilization=0", "use a fraction in (0, 1)", id="no-vllm-share"),
    ],
)
def test_bad_config_fails_with_a_message_naming_the_fix(override, message):
    with pytest.raises(RecipeError) as error:
        load_config(str(ROOT / "config.yaml"), [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "override",
    [
        # The nearest valid value beside each boundary above: the checks refuse no more than they should.
        pytest.param("training.warmup_ratio=0", id="no-warmup"),
        pytest.param("training.warmup_ratio=0.99", id="warmup-just-under-1"),
        pytest.param("training.weight_decay=0", id="no-decay"),
        pytest.param("training.max_grad_norm=0", id="clipping-off"),
        pytest.param("training.adam_beta1=0", id="adam-beta1-0"),
        pytest.param("output.save_total_limit=1", id="keep-one-checkpoint"),
        pytest.param("training.seed=4294967295", id="largest-seed"),
        pytest.param("data.limit=2", id="two-questions"),
    ],
)
def test_the_value_beside_each_boundary_is_accepted(override):
    key, value = override.split("=")
    section, name = key.split(".")
    assert getattr(getattr(load_config(str(ROOT / "config.yaml"), [override]), section), name) == float(value)


OVERRIDES = ["training.max_steps=5"]


@pytest.mark.parametrize(
    "text, message, overrides",
    [
        # Regressions: a syntax error said only what PyYAML was parsing ("while parsing a flow sequence"), not where.
        pytest.param(
            "model: [1, 2",
            "is not valid YAML at line 1, column 13: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence from line 1, column 8): fix it there",
            OVERRIDES,
            id="unclosed-bracket",
        ),
        pytest.param(
            "training:\n\tbeta: 0\n",
            "is not valid YAML at line 2, column 1: found character '\\t' that cannot start any token (while scanning for the next token): indent with spaces, not tabs",
            OVERRIDES,
            id="a-tab",
        ),
        pytest.param(
            "training:\n  beta: 0\n   lr: 1\n",
            "is not valid YAML at line 3, column 6: mapping values are not allowed here: fix it there",
            OVERRIDES,
            id="misindented-key",
        ),
        pytest.param("- a\n- b\n", "config: expected a mapping", OVERRIDES, id="yaml-list"),
        pytest.param("modle:\n  name: x\n", "did you mean 'model'?", OVERRIDES, id="top-level-typo"),
        # Regressions: a list or scalar root was a traceback; a key written twice kept the second silently.
        pytest.param("- a\n", "got a YAML list: write key: value lines", [], id="yaml-list-without-overrides"),
        pytest.param("0.5\n", "got a YAML float", OVERRIDES, id="yaml-scalar"),
        pytest.param(
            "rewards:\n  # correctness: 1\n", "rewards is empty: list at least one of", [], id="rewards-all-commented"
        ),
        pytest.param(
            "training:\n  beta: 0\nmodel:\n  name: x\ntraining:\n  max_steps: 5\n",
            "sets 'training' twice (lines 1 and 5): keep one",
            OVERRIDES,
            id="section-twice",
        ),
        pytest.param(
            "lora:\n  r: 8\n  alpha: 8\n  r: 16\n", "sets 'r' twice (lines 2 and 4)", OVERRIDES, id="key-twice"
        ),
    ],
)
def test_bad_yaml_file(tmp_path, text, message, overrides):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=re.escape(message)) as error:
        load_config(str(path), overrides)
    assert "\n" not in str(error.value)


# Regression: a section whose keys are all commented out (YAML null) was "expected a mapping of keys, got None".
# It reads as {}: a section's defaults; for rewards, none (alone refused in test_bad_yaml_file, as rewards: {} is).
@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        pytest.param("training:\n  # beta: 0\n", [], {"training": Config().training}, id="section"),
        pytest.param("model:\ntraining:\n", [], {"model": Config().model}, id="two-sections"),
        pytest.param(
            "rewards:\n", ["rewards.correctness=2"], {"rewards": {"correctness": 2.0}}, id="rewards-then-a-weight"
        ),
        pytest.param("training:\n  trl:\n", [], {"training": Config().training}, id="free-mapping"),
        pytest.param("training:\n", ["training.beta=0.5"], {"training.beta": 0.5}, id="a-set-fills-it"),
    ],
)
def test_an_empty_section_reads_as_an_empty_mapping(tmp_path, text, overrides, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    cfg = load_config(str(path), overrides)
    for key, value in expected.items():
        section, _, leaf = key.partition(".")
        got = getattr(cfg, section)
        if leaf:
            got = got[leaf] if isinstance(got, dict) else getattr(got, leaf)
        assert got == value, key


def test_a_yaml_merge_key_may_repeat_what_it_overrides(tmp_path):
    path = tmp_path / "merge-key.yaml"
    path.write_text("lora:\n  <<: {r: 8, alpha: 8}\n  r: 16\n")
    cfg = load_config(str(path))
    assert (cfg.lora.r, cfg.lora.alpha) == (16, 8)


# (id, overrides on top of configs/tiny-cpu.yaml, what they must give: {dotted key or section: value})
SECTION_OVERRIDES = [
    # Regression: --set 'training={...}' replaced the section, resetting its other keys to the defaults.
    (
        "mapping-merges-into-the-section",
        ["training={beta: 0.5}"],
        {"training.beta": 0.5, "training.learning_rate": 2e-4},
    ),
    ("same-as-the-dotted-form", ["training.beta=0.5"], {"training.beta": 0.5, "training.learning_rate": 2e-4}),
    ("empty-mapping-changes-nothing", ["training={}"], {"training.beta": 0.04, "training.learning_rate": 2e-4}),
    (
        "sections-merge-one-after-another",
        ["training={beta: 0.5}", "lora={r: 4}", "training={temperature: 0.7}"],
        {"training.beta": 0.5, "training.temperature": 0.7, "lora.r": 4, "lora.alpha": 16},
    ),
    # Regression: --set 'rewards={...}' merged into the five defaults, so no command line trained on a subset,
    # unlike the same mapping in a config file. Its keys are free (no dataclass), so the mapping replaces it.
    ("rewards-mapping-replaces", ["rewards={correctness: 3}"], {"rewards": {"correctness": 3.0}}),
    (
        "rewards-then-a-weight",
        ["rewards={correctness: 3}", "rewards.xmlcount=0.5"],
        {"rewards": {"correctness": 3.0, "xmlcount": 0.5}},
    ),
    (
        "rewards-dotted-adjusts-the-defaults",
        ["rewards.correctness=3"],
        {"rewards.correctness": 3.0, "rewards.xmlcount": 1.0},
    ),
    (
        "free-mapping-inside-a-section-replaces",
        ["training.trl={beta: 0.1}", "training={trl: {epsilon: 0.3}}"],
        {"training.trl": {"epsilon": 0.3}, "training.learning_rate": 2e-4},
    ),
    (
        "free-mapping-dotted-adds",
        ["training.trl={beta: 0.1}", "training.trl.epsilon=0.3"],
        {"training.trl": {"beta": 0.1, "epsilon": 0.3}},
    ),
    ("a-list-replaces", ["lora={target_modules: [q_proj]}"], {"lora.target_modules": ["q_proj"], "lora.r": 8}),
]


@pytest.mark.parametrize("overrides, expected", [pytest.param(*row[1:], id=row[0]) for row in SECTION_OVERRIDES])
def test_a_section_override_merges_like_the_dotted_form(overrides, expected):
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), overrides)
    for key, value in expected.items():
        section, _, leaf = key.partition(".")
        got = getattr(cfg, section)
        if leaf:
            got = got[leaf] if isinstance(got, dict) else getattr(got, leaf)
        assert got == value, key


@pytest.mark.parametrize(
    "mapping", ["{correctness: 2}", "{correctness: 2, strict_format: 0.5}", "{}"], ids=["one", "two", "none"]
)
def test_set_rewards_is_the_same_mapping_in_the_file(tmp_path, mapping):
    base = ROOT / "configs" / "tiny-cpu.yaml"
    written = tmp_path / "written.yaml"
    written.write_text(base.read_text() + f"\nrewards: {mapping}\n")
    outcomes = []
    for path, overrides in ((base, [f"rewards={mapping}"]), (written, [])):
        try:
            outcomes.append(load_config(str(path), overrides))
        except RecipeError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize("key", ["model.name", "data.dataset", "output.dir", "output.resume"])
@pytest.mark.parametrize(
    "written, expected",
    [("~/x", "{home}/x"), ("$RUNS/x", "{runs}/x"), ("${RUNS}/x", "{runs}/x")],
    ids=["home", "variable", "braced-variable"],
)
def test_home_and_variables_expand_in_every_path_key(tmp_path, monkeypatch, key, written, expected):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
    (tmp_path / "runs" / "x").mkdir(parents=True)  # output.resume must name an existing folder
    (tmp_path / "x").mkdir()
    value = f"'{written}'" if written.startswith("$") else written
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), [f"{key}={value}"])
    section, leaf = key.split(".")
    assert getattr(getattr(cfg, section), leaf) == expected.format(home=tmp_path, runs=tmp_path / "runs")


def unreadable(path: Path, monkeypatch) -> None:
    # chmod 000 stops no one running as root (CI does): the read fails as it would for another user.
    path.write_text("training: {}\n")
    read_text = Path.read_text

    def refuse(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)


@pytest.mark.parametrize(
    "make, message",
    [
        pytest.param(None, "config file '{path}' not found: pass --config with the path of a YAML file", id="missing"),
        # Regressions: a folder was "not found"; an unreadable file was a PermissionError traceback.
        pytest.param(
            lambda path, _: path.mkdir(),
            "config file '{path}' is a directory: pass --config with the path of a YAML file in it",
            id="a-directory",
        ),
        pytest.param(
            unreadable,
            "config file '{path}' cannot be read (Permission denied): make it readable, or pass another file",
            id="unreadable",
        ),
    ],
)
def test_config_path_that_is_not_a_readable_file(tmp_path, monkeypatch, make, message):
    path = tmp_path / "config.yaml"
    if make is not None:
        make(path, monkeypatch)
    with pytest.raises(RecipeError) as error:
        load_config(str(path))
    assert str(error.value) == message.format(path=path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        pytest.param(["model.backend=unsloth"], "model.backend=unsloth needs a CUDA GPU", id="unsloth"),
        pytest.param(["model.backend=trl"], "model.fast_inference=true needs vLLM", id="vllm"),
        pytest.param(
            ["model.backend=trl", "model.fast_inference=false", "model.load_in_4bit=true"],
            "model.load_in_4bit=true needs bitsandbytes",
            id="4bit",
        ),
        pytest.param(
            ["model.fast_inference=false", "training.optim=paged_adamw_8bit"],
            "training.optim=paged_adamw_8bit needs bitsandbytes",
            id="8bit-optimizer",
        ),
    ],
)
def test_gpu_only_settings_fail_on_cpu(overrides, message):
    cfg = load_config(str(ROOT / "config.yaml"), overrides)
    with pytest.raises(RecipeError, match=message):
        resolve_backend(cfg)


# Regressions: an optimizer whose package is missing raised ImportError (or ValueError) after the model loaded.
@pytest.mark.parametrize(
    "optim, switch, message",
    [
        pytest.param("paged_adamw_32bit", "is_bitsandbytes_available", "pip install -U bitsandbytes", id="paged-32bit"),
        pytest.param("galore_adamw", "is_galore_torch_available", "install `galore_torch`", id="galore"),
        pytest.param("grokadamw", "is_grokadamw_available", "pip install grokadamw", id="grokadamw-raises-valueerror"),
        pytest.param("schedule_free_adamw", "is_schedulefree_available", "install `schedulefree`", id="schedule-free"),
    ],
)
def test_an_optimizer_without_its_package_is_refused_before_the_model_loads(
    tiny_assets, tmp_path, monkeypatch, capsys, optim, switch, message
):
    import transformers.trainer_optimizer

    monkeypatch.setattr(transformers.trainer_optimizer, switch, lambda *a, **k: False)
    monkeypatch.setattr(train_grpo.backends, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "run"
    capsys.readouterr()  # what building tiny_assets printed
    assert train_tiny(tiny_assets, out, "--set", f"training.optim={optim}") == 2
    err = capsys.readouterr().err  # the first run of a test session adds the datasets library's progress bars
    line = err.strip().splitlines()[-1]
    assert err.count("error:") == 1
    assert line.startswith(f"error: training.optim={optim}: ") and message in line
    assert line.endswith("install it, or use adamw_torch_fused or adamw_torch")
    assert not out.exists()


@pytest.mark.parametrize(
    "compile, disabled",
    [
        pytest.param(False, "1", id="default-turns-unsloth-compile-off"),
        pytest.param(True, None, id="compile-true-leaves-unsloth-alone"),
    ],
)
def test_import_unsloth_sets_compile_switch_before_import(tmp_path, monkeypatch, compile, disabled):
    # A stand-in unsloth that records the switch as it stood at import time, which is when Unsloth reads it.
    (tmp_path / "unsloth.py").write_text("import os\nCOMPILE_DISABLE = os.environ.get('UNSLOTH_COMPILE_DISABLE')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "unsloth", None)  # set, then removed: teardown drops the stand-in and
    monkeypatch.delitem(sys.modules, "unsloth")  # the switches import_unsloth sets
    for name in ("UNSLOTH_COMPILE_DISABLE", "UNSLOTH_DISABLE_STATISTICS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    import_unsloth(ModelConfig(compile=compile))
    assert disabled == sys.modules["unsloth"].COMPILE_DISABLE
    assert os.environ["UNSLOTH_DISABLE_STATISTICS"] == "1"


# Unsloth patches transformers, peft and trl when imported, and warns when any came first ("may run slower").
# Until 2026-12-07 load_config's optimizer check imported transformers and peft before it in every GPU run.
@pytest.mark.parametrize(
    "entry, words, call",
    [
        pytest.param("train_grpo", [], "train_grpo.main(argv)", id="train"),
        pytest.param("eval_grpo", ["--base-only", "--ask", "1+1?"], "eval_grpo.main(argv)", id="evaluate"),
        # The bench's rows: the recipe's, and the notebook's own calls.
        pytest.param("bench", [], "bench.run_capped(None, Path('p'), argv, None)", id="bench-row"),
        pytest.param("bench", [], "bench.run_capped(None, Path('p'), argv, None, 'notebook')", id="bench-notebook-row"),
    ],
)
def test_the_gpu_path_imports_unsloth_before_transformers_peft_and_trl(tmp_path, tiny_assets, entry, words, call):
    # A stand-in unsloth that records what was imported before it, then stops the run.
    (tmp_path / "unsloth.py").write_text(
        "import sys\n"
        "print('before unsloth:', sorted(m for m in ('peft', 'transformers', 'trl') if m in sys.modules))\n"
        "raise SystemExit(0)\n"
    )
    argv = tiny_cli(tiny_assets, tmp_path / "run", *words)
    script = (
        f"import sys; from pathlib import Path; sys.path[:0] = [{str(tmp_path)!r}, 'bench']; import {entry}; "
        f"{entry}.backends.resolve_backend = lambda *a, **k: 'unsloth'; argv = {argv!r}; sys.exit({call})"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "before unsloth: []" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    "overrides, training, exported, switch",
    [
        pytest.param([], True, None, "1", id="16bit-vllm-folds"),
        pytest.param(["model.load_in_4bit=true"], True, None, None, id="4bit-cannot-fold"),
        pytest.param(["model.fast_inference=false"], True, None, None, id="no-vllm-nothing-to-fold"),
        pytest.param([], True, "0", "0", id="exported-0-opts-out"),
        # The learning check scored every arm's adapter unfolded: evaluation keeps that.
        pytest.param([], False, None, None, id="evaluation-generates-unfolded"),
    ],
)
def test_import_unsloth_folds_training_rollouts_on_16bit_vllm_unless_opted_out(
    tmp_path, monkeypatch, overrides, training, exported, switch
):
    # The stand-in records the switch at import time; Unsloth reads it when the model loads, later still.
    (tmp_path / "unsloth.py").write_text("import os\nFOLD = os.environ.get('UNSLOTH_VLLM_MERGED_ROLLOUT')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "unsloth", None)  # set, then removed: teardown drops the stand-in and
    monkeypatch.delitem(sys.modules, "unsloth")  # the switch import_unsloth sets
    monkeypatch.setenv(FOLD_SWITCH, "")
    monkeypatch.delenv(FOLD_SWITCH)
    if exported is not None:
        monkeypatch.setenv(FOLD_SWITCH, exported)
    cfg = load_config(str(ROOT / "config.yaml"), overrides)
    import_unsloth(cfg.model, training=training)
    assert switch == sys.modules["unsloth"].FOLD
    if training:  # what the banner says is what Unsloth was told
        assert folds_rollouts(cfg, "unsloth") is (switch == "1")
    assert folds_rollouts(cfg, "trl") is False  # TRL loads merged weights into its own engine: nothing to switch


def test_auto_backend_is_trl_on_cpu():
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), ["model.backend=auto"])
    assert resolve_backend(cfg) == "trl"


@pytest.mark.parametrize(
    "existing, resume, expected, said",
    [
        pytest.param([], "never", None, [], id="fresh-run"),
        pytest.param(
            [],
            "auto",
            None,
            ["nothing to resume in {out}: starting at step 0"],
            id="auto-without-checkpoints-starts-fresh",
        ),
        pytest.param(["checkpoint-9", "checkpoint-10"], "auto", "checkpoint-10", [], id="auto-takes-latest-by-number"),
    ],
)
def test_resume_resolution(tmp_path, existing, resume, expected, said):
    for name in existing:
        (tmp_path / name).mkdir()
        step = int(name.split("-")[1])
        (tmp_path / name / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
        runs.write_marker(tmp_path / name, step)
    cfg = load_config(None, [f"output.dir={tmp_path}", f"output.resume={resume}"])
    got, warnings = train_grpo.resolve_resume(cfg)
    assert got == (None if expected is None else tmp_path / expected)
    assert warnings == [line.format(out=tmp_path) for line in said]


def test_existing_checkpoints_are_never_overwritten(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    cfg = load_config(None, [f"output.dir={tmp_path}"])
    with pytest.raises(RecipeError, match=r"already holds an earlier run \(checkpoint-5\): pass --resume"):
        train_grpo.resolve_resume(cfg)


def test_main_reports_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = train_grpo.main(
        ["--config", str(ROOT / "config.yaml"), "--set", "training.max_stesp=5", "--set", f"output.dir={out}"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: unknown config key") and err.count("\n") == 1
    assert not out.exists()


def test_batch_is_prompts_times_generations_and_trl_accepts_it(tmp_path):
    cfg = load_config(
        str(ROOT / "configs" / "tiny-cpu.yaml"),
        [f"output.dir={tmp_path}", "training.prompts_per_step=3", "training.steps_per_generation=2"],
    )
    args = grpo_args(cfg, "trl", [0])
    assert args.per_device_train_batch_size == 3 * cfg.training.num_generations
    assert args.generation_batch_size == 2 * 3 * cfg.training.num_generations
    assert args.reward_weights == list(cfg.rewards.values())


def test_half_written_checkpoint_is_named_not_resumed(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    cfg = load_config(None, [f"output.dir={tmp_path}", "output.resume=auto"])
    # Regression: it was skipped, and the run started again at step 0 beside it.
    with pytest.raises(RecipeError, match=r"\(checkpoint-3 has no completion marker \(its save was cut off\)\)"):
        train_grpo.resolve_resume(cfg)


@pytest.mark.parametrize(
    "utilization, free_gib, total_gib, expected",
    [
        pytest.param(0.6, 23.5, 24.0, 0.5875, id="a-24gb-card-barely-differs"),
        # The bench's capped H200: the same YAML must not ask TRL's vLLM for 0.6 of 141 GB.
        pytest.param(0.6, 24.0, 141.0, 0.6 * 24 / 141, id="a-capped-large-card"),
    ],
)
def test_gpu_memory_utilization_means_a_share_of_free_memory_on_both_backends(
    utilization, free_gib, total_gib, expected
):
    from recipe.backend import trl_vllm_fraction

    assert trl_vllm_fraction(utilization, free_gib * 2**30, total_gib * 2**30) == pytest.approx(expected)


def tiny_grpo_args(tmp_path, *overrides: str, stop_ids: tuple[int, ...] = (0,)):
    cfg = load_config(str(ROOT / "configs" / "tiny-cpu.yaml"), [f"output.dir={tmp_path}", *overrides])
    return grpo_args(cfg, "trl", list(stop_ids))


@pytest.mark.parametrize(
    "override, expected",
    [
        pytest.param(
            "training.trl={num_iterations: 2, top_p: 0.95}", {"num_iterations": 2, "top_p": 0.95}, id="mapping"
        ),
        pytest.param("training.trl.epsilon_high=0.28", {"epsilon_high": 0.28}, id="dotted-set"),
        pytest.param("training.trl.mask_truncated_completions=true", {"mask_truncated_completions": True}, id="bool"),
        # Each value is checked against GRPOConfig's annotation, as the recipe's own keys are against theirs.
        pytest.param("training.trl.epsilon=1e-1", {"epsilon": 0.1}, id="float-yaml-reads-as-text"),
        pytest.param("training.trl.epsilon=1", {"epsilon": 1.0}, id="int-for-float"),
        pytest.param("training.trl.min_p=null", {"min_p": None}, id="optional-null"),
        pytest.param(
            "training.trl.lr_scheduler_kwargs={min_lr_rate: 0.1}",
            {"lr_scheduler_kwargs": {"min_lr_rate": 0.1}},
            id="mapping-for-a-bare-dict",
        ),
        pytest.param("training.trl.save_strategy=steps", {"save_strategy": "steps"}, id="enum-or-str"),
    ],
)
def test_trl_keys_reach_grpo_config(tmp_path, override, expected):
    args = tiny_grpo_args(tmp_path, override)
    assert {key: getattr(args, key) for key in expected} == expected
    assert args.beta == load_config(str(ROOT / "configs" / "tiny-cpu.yaml")).training.beta, (
        "the recipe's own values stay"
    )


@pytest.mark.parametrize(
    "fast_inference, override, expected",
    [
        pytest.param(
            True,
            "training.trl.generation_kwargs={top_k: 20}",
            {"stop_token_ids": [7], "detokenize": False, "top_k": 20},
            id="vllm-keys-beside-the-stop-tokens",
        ),
        # TRL decodes the token ids itself: vLLM's text is never read (bench/LOG.md 2026-12-07f).
        pytest.param(True, "training.trl={}", {"stop_token_ids": [7], "detokenize": False}, id="vllm-recipe-alone"),
        pytest.param(
            True,
            "training.trl.generation_kwargs={detokenize: true}",
            {"stop_token_ids": [7], "detokenize": True},
            id="vllm-detokenizer-back-on",
        ),
        # vLLM refuses stop strings without its detokenizer, at the first rollout: they turn it back on.
        pytest.param(
            True,
            "training.trl.generation_kwargs={stop: ['</answer>']}",
            {"stop_token_ids": [7], "detokenize": True, "stop": ["</answer>"]},
            id="vllm-stop-strings-keep-the-detokenizer",
        ),
        pytest.param(
            True,
            "training.trl.generation_kwargs={stop: []}",
            {"stop_token_ids": [7], "detokenize": False, "stop": []},
            id="vllm-no-stop-strings-no-detokenizer",
        ),
        pytest.param(
            False, "training.trl.generation_kwargs={top_k: 20}", {"top_k": 20}, id="transformers-generate-keys"
        ),
        pytest.param(  # generate() has no detokenizer to keep on
            False, "training.trl.generation_kwargs={stop: [x]}", {"stop": ["x"]}, id="transformers-stop-as-given"
        ),
        pytest.param(False, "training.trl={}", None, id="transformers-none"),
    ],
)
def test_generation_kwargs_add_to_the_recipes_stop_tokens(tmp_path, fast_inference, override, expected):
    args = tiny_grpo_args(tmp_path, f"model.fast_inference={str(fast_inference).lower()}", override, stop_ids=(7,))
    assert args.generation_kwargs == expected


@pytest.mark.parametrize("value", ["null", "5", "[detokenize]"], ids=["null", "number", "list"])
def test_generation_kwargs_that_are_not_a_mapping_are_refused(tmp_path, value):
    with pytest.raises(RecipeError, match=r"^training.trl.generation_kwargs must be a mapping of generation keys"):
        tiny_grpo_args(tmp_path, f"training.trl.generation_kwargs={value}")


class VLLMValidationError(ValueError):  # vLLM 0.26's (vllm/exceptions.py): a ValueError naming its parameter
    def __init__(self, message: str, *, parameter: str | None = None, value=None):
        super().__init__(message)
        self.parameter, self.value = parameter, value

    def __str__(self):
        return f"{super().__str__()} (parameter={self.parameter}, value={self.value})"


class SamplingParams:  # vLLM 0.26's, in part: its keywords and some checks of its _verify_args, in its words
    def __init__(
        self,
        n=1,
        repetition_penalty=1.0,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        max_tokens=16,
        min_tokens=0,
        stop=None,
        stop_token_ids=None,
        detokenize=True,
        logprobs=None,
    ):
        if temperature < 0.0:
            raise VLLMValidationError(
                f"temperature must be non-negative, got {temperature}.", parameter="temperature", value=temperature
            )
        if temperature > 2.0:
            raise VLLMValidationError(
                f"temperature must be in [0, 2], got {temperature}.", parameter="temperature", value=temperature
            )
        if max_tokens is not None and min_tokens > max_tokens:
            raise ValueError(f"min_tokens must be less than or equal to max_tokens={max_tokens}, got {min_tokens}.")


def vllm_stand_in(monkeypatch, present: bool) -> None:
    """vllm as SamplingParams above, or (``present`` false) a failing import. trl is imported first, as a run
    imports it: its import asks for vllm's package spec, which the stand-in lacks."""
    import trl  # noqa: F401

    stand_in = types.ModuleType("vllm")
    stand_in.SamplingParams = SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", stand_in if present else None)


@pytest.mark.parametrize(
    "vllm, fast_inference, entry, message",
    [
        pytest.param(True, True, "detokenize: 1", None, id="vllm-key"),
        pytest.param(
            True,
            True,
            "detokenise: 1",
            "training.trl.generation_kwargs.detokenise is not a vLLM sampling parameter: did you mean 'detokenize'?",
            id="misspelt-vllm-key",
        ),
        pytest.param(
            True,
            True,
            "num_beams: 1",
            "training.trl.generation_kwargs.num_beams is not a vLLM sampling parameter: use a keyword of vllm.SamplingParams",
            id="transformers-key-for-vllm",
        ),
        pytest.param(False, True, "detokenise: 1", None, id="no-vllm-here-unchecked"),  # a dry run on a CPU
        pytest.param(True, False, "num_beams: 1", None, id="transformers-generate-unchecked"),
    ],
)
def test_generation_keys_vllm_lacks_are_refused_before_the_model_loads(
    tmp_path, monkeypatch, vllm, fast_inference, entry, message
):
    vllm_stand_in(monkeypatch, vllm)
    words = (f"model.fast_inference={str(fast_inference).lower()}", f"training.trl.generation_kwargs={{{entry}}}")
    if message is None:
        key, value = entry.split(": ")
        assert tiny_grpo_args(tmp_path, *words, stop_ids=(7,)).generation_kwargs[key] == int(value)
    else:
        with pytest.raises(RecipeError, match=f"^{re.escape(message)}$"):
            tiny_grpo_args(tmp_path, *words, stop_ids=(7,))


@pytest.mark.parametrize(
    "vllm, overrides, message",
    [
        pytest.param(True, [], None, id="the-recipes-own"),
        pytest.param(
            True,
            ["training.trl.generation_kwargs={temperature: -1}"],
            "training.trl.generation_kwargs.temperature: vLLM's sampling parameters refuse it: temperature must be "
            "non-negative, got -1.",
            id="generation-kwargs-value",
        ),
        pytest.param(
            True,
            ["training.temperature=2.5"],
            "training.temperature: vLLM's sampling parameters refuse it: temperature must be in [0, 2], got 2.5.",
            id="recipe-key-vllm-caps",
        ),
        pytest.param(
            True,
            ["training.trl.generation_kwargs={min_tokens: 97}"],
            "training.trl.generation_kwargs.min_tokens: vLLM's sampling parameters refuse it: min_tokens must be "
            "less than or equal to max_tokens=96, got 97.",
            id="longer-than-the-completion",
        ),
        # Regression: built alone, SamplingParams' own max_tokens (16) refused any min_tokens over 16.
        pytest.param(True, ["training.trl.generation_kwargs={min_tokens: 96}"], None, id="checked-at-trls-max-tokens"),
        pytest.param(False, ["training.temperature=2.5"], None, id="no-vllm-here-unchecked"),  # a dry run on a CPU
        pytest.param(
            True, ["model.fast_inference=false", "training.temperature=2.5"], None, id="transformers-generate-unchecked"
        ),
    ],
)
def test_sampling_values_vllm_refuses_fail_before_the_model_loads(tmp_path, monkeypatch, vllm, overrides, message):
    vllm_stand_in(monkeypatch, vllm)
    words = ("model.fast_inference=true", *overrides)
    if message is None:
        tiny_grpo_args(tmp_path, *words, stop_ids=(7,))
    else:
        with pytest.raises(RecipeError, match=f"^{re.escape(message)}$"):
            tiny_grpo_args(tmp_path, *words, stop_ids=(7,))


@pytest.mark.parametrize("off", ["false", "null"])
def test_stop_strings_without_the_detokenizer_are_refused_before_the_model_loads(tmp_path, off):
    with pytest.raises(
        RecipeError,
        match=r"^training.trl.generation_kwargs: vLLM's stop strings need its detokenizer: remove detokenize: false or stop$",
    ):
        tiny_grpo_args(
            tmp_path,
            "model.fast_inference=true",
            f"training.trl.generation_kwargs={{stop: [x], detokenize: {off}}}",
            stop_ids=(7,),
        )


def test_a_vllm_server_gets_no_detokenize_key_which_it_would_ignore(tmp_path):
    args = tiny_grpo_args(tmp_path, "model.fast_inference=true", "vllm.mode=server", stop_ids=(7,))
    assert args.generation_kwargs == {"stop_token_ids": [7]}


def test_a_generation_key_the_recipe_sets_is_refused(tmp_path):
    with pytest.raises(
        RecipeError, match=r"^training.trl.generation_kwargs.stop_token_ids: the recipe sets it \(\[7\]\); remove it$"
    ):
        tiny_grpo_args(
            tmp_path, "model.fast_inference=true", "training.trl.generation_kwargs={stop_token_ids: [1]}", stop_ids=(7,)
        )


@pytest.mark.parametrize(
    "override, message",
    [
        pytest.param("training.trl.beta=0.1", "training.trl.beta: set training.beta instead", id="modelled-same-name"),
        pytest.param(
            "training.trl.per_device_train_batch_size=8",
            "training.trl.per_device_train_batch_size: set training.prompts_per_step instead",
            id="modelled-other-name",
        ),
        pytest.param(
            "training.trl.output_dir=elsewhere", "training.trl.output_dir: set output.dir instead", id="modelled-output"
        ),
        pytest.param(
            "training.trl.log_completions=true",
            "training.trl.log_completions: the recipe sets it (False); remove it",
            id="fixed-by-recipe",
        ),
        pytest.param(
            "training.trl.report_to=wandb",
            "training.trl.report_to: set output.report_to instead",
            id="modelled-in-output",
        ),
        pytest.param(
            "training.trl.num_iteration=2",
            "training.trl.num_iteration is not a GRPOConfig field: did you mean 'training.trl.num_iterations'?",
            id="typo-suggests-field",
        ),
        pytest.param(
            "training.trl.xyzzy=1",
            "training.trl.xyzzy is not a GRPOConfig field: use a field of trl.GRPOConfig",
            id="unknown-no-match",
        ),
        pytest.param(
            "training.trl.auto_find_batch_size=true",
            "training.trl.auto_find_batch_size=True: auto_find_batch_size is not supported by GRPO",
            id="value-grpo-refuses",
        ),
        pytest.param(
            "training.trl.generation_batch_size=16",
            "training.trl.generation_batch_size=16: 'generation_batch_size' and 'steps_per_generation' can not be both",
            id="conflicts-with-recipe",
        ),
        pytest.param(
            "training.trl.eval_strategy=sometimes",
            "training.trl.eval_strategy='sometimes': ",
            id="value-transformers-refuses",
        ),
        pytest.param("training.trl=3", "training.trl: expected dict, got 3", id="not-a-mapping"),
        # Regressions: training.trl values went to GRPOConfig unchecked; epsilon=abc failed at step 1,
        # num_iterations=0 trained 0 steps and saved the untrained adapter, top_p=2.0 trained as if 1.
        pytest.param(
            "training.trl.epsilon=abc", "training.trl.epsilon: expected float, got 'abc'", id="text-for-float"
        ),
        pytest.param(
            "training.trl.num_iterations=1.5", "training.trl.num_iterations: expected int", id="float-for-int"
        ),
        pytest.param(
            "training.trl.mask_truncated_completions=maybe",
            "training.trl.mask_truncated_completions: expected bool",
            id="text-for-bool",
        ),
        pytest.param(
            "training.trl.num_iterations=0", "training.trl.num_iterations=0: use 1 or more", id="no-iterations"
        ),
        pytest.param("training.trl.epsilon=-0.1", "training.trl.epsilon=-0.1: ", id="negative-clip"),
        pytest.param("training.trl.epsilon=.nan", "training.trl.epsilon=nan: ", id="nan-clip"),
        pytest.param("training.trl.epsilon_high=-1", "training.trl.epsilon_high=-1.0: ", id="negative-upper-clip"),
        pytest.param(
            "training.trl.top_p=2.0", "training.trl.top_p=2.0: use a probability in (0, 1]", id="top-p-over-1"
        ),
        pytest.param("training.trl.top_p=0", "training.trl.top_p=0.0: ", id="top-p-zero"),
        pytest.param("training.trl.top_k=-1", "training.trl.top_k=-1: ", id="negative-top-k"),
        pytest.param("training.trl.min_p=1.5", "training.trl.min_p=1.5: ", id="min-p-over-1"),
        pytest.param("training.trl.repetition_penalty=0", "training.trl.repetition_penalty=0.0: ", id="zero-penalty"),
        # Regressions: GRPOConfig's own error about a recipe key came through as a traceback.
        pytest.param(
            "training.lr_scheduler_type=reduce_lr_on_plateau",
            "training.lr_scheduler_type='reduce_lr_on_plateau': TRL's GRPOConfig refuses it: lr_scheduler_type reduce_lr_on_plateau requires an eval strategy",
            id="recipe-value-grpo-refuses",
        ),
        pytest.param(
            "training={lr_scheduler_type: reduce_lr_on_plateau, trl: {epsilon_high: 0.28}}",
            "training.lr_scheduler_type='reduce_lr_on_plateau': TRL's GRPOConfig refuses it: ",
            id="recipe-value-grpo-refuses-beside-trl-keys",
        ),
    ],
)
def test_bad_trl_key_is_one_line_naming_it(tmp_path, override, message):
    with pytest.raises(RecipeError) as error:
        tiny_grpo_args(tmp_path, override)
    assert message in str(error.value)
    assert "\n" not in str(error.value)
