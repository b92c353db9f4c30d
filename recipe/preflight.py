"""Checks of the model folder and the data against the config, run before any weights load.

A local model folder is read as files only (config.json, tokenizer files, safetensors headers), so
a wrong target module, a missing tokenizer or damaged weights fail in a second with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from recipe.config import LORA_PROJECTIONS, Config
from recipe.errors import RecipeError
from recipe.runs import weights_problem

# model_type -> the Linear layers LoRA can target; a model type not listed here is not checked.
PROJECTIONS = {
    name: LORA_PROJECTIONS for name in ("qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "phi3", "smollm3")
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def local_model(cfg: Config) -> Path | None:
    path = Path(cfg.model.name).expanduser()
    if path.is_dir():
        return path
    if cfg.model.name.startswith((".", "/", "~")):
        raise RecipeError(f"model.name={cfg.model.name}: no such folder; set model.name to a model folder or a hub id")
    return None


def check_model_folder(cfg: Config) -> None:
    """A local model folder must hold a readable config.json, tokenizer files and whole weights."""
    folder = local_model(cfg)
    if folder is None:
        return
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(
            f"model.name={folder} has no config.json: point model.name at a transformers model folder"
        ) from None
    except (OSError, ValueError) as error:
        raise RecipeError(
            f"{folder / 'config.json'} is unreadable ({type(error).__name__}): restore the model folder"
        ) from None
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise RecipeError(
            f"model.name={folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}): copy the tokenizer into the model folder"
        )
    check_weights(folder)
    check_target_modules(cfg, config.get("model_type"))


def check_weights(folder: Path) -> None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            raise RecipeError(f"{index} is unreadable: restore the model folder") from None
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    elif any(folder.glob("*.bin")):
        return  # PyTorch pickles cannot be checked without loading them
    else:
        raise RecipeError(
            f"model.name={folder} has no weights (model.safetensors): copy the model's weight files into the folder"
        )
    for shard in shards:
        problem = weights_problem(folder / shard)
        if problem is not None:
            raise RecipeError(f"model.name={folder} {problem}: download or copy the model again")


def check_target_modules(cfg: Config, model_type: str | None) -> None:
    known = PROJECTIONS.get(model_type or "")
    if known is None:
        return
    unknown = [name for name in cfg.lora.target_modules if name not in known]
    if unknown:
        raise RecipeError(
            f"lora.target_modules names {', '.join(unknown)}, not a layer of this {model_type} model: use some of {', '.join(known)}"
        )


def check_enough_prompts(cfg: Config, kept: int) -> None:
    """TRL drops a generation batch that is not full, so fewer prompts than one would train no step at all."""
    needed = cfg.training.prompts_per_step * cfg.training.steps_per_generation
    if kept < needed:
        raise RecipeError(
            f"data.dataset={cfg.data.dataset} has {kept} usable prompt(s), fewer than one generation batch needs "
            f"(training.prompts_per_step x training.steps_per_generation = {needed}): use more data (data.limit) or lower those"
        )
