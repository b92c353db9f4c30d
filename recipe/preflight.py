"""Checks of the model folder and the data against the config, run before any weights load.

A local model folder is read as files only (config.json, tokenizer files, safetensors headers), so
a wrong target module, a missing tokenizer or damaged weights fail in a second with one line. Hub
ids are checked with one request to the Hub before the libraries' own retries would start.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

from recipe.config import LORA_PROJECTIONS, Config
from recipe.data import is_hub_dataset
from recipe.errors import RecipeError
from recipe.runs import weights_problem

# One probe, as patient as one of huggingface_hub's own requests (HF_HUB_ETAG_TIMEOUT, 10 s): a Hub
# slower than that would fail there too. Without it an unreachable Hub costs about 50 s of its
# retries (HEAD requests backing off 1, 2, 4, 8, 8 s) before the error.
HUB_PROBE_TIMEOUT_S = 10
# model_type -> the Linear layers LoRA can target; a model type not listed here is not checked.
PROJECTIONS = {
    name: LORA_PROJECTIONS for name in ("qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "phi3", "smollm3")
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
# Tensor name (after "model." or a layer's prefix) -> what config.json says each of its dimensions is: a key, or
# keys whose product it is. transformers builds the model from config.json and fails on any weight of another
# shape, so these few are compared before that (layer 0 stands for all: one config sizes every layer).
HEAD_DIM = ("head_dim",)  # config.json's head_dim, else hidden_size // num_attention_heads
SHAPES = {
    "embed_tokens.weight": (("vocab_size",), ("hidden_size",)),
    "lm_head.weight": (("vocab_size",), ("hidden_size",)),
    "layers.0.input_layernorm.weight": (("hidden_size",),),
    "layers.0.self_attn.q_proj.weight": (("num_attention_heads", *HEAD_DIM), ("hidden_size",)),
    "layers.0.self_attn.k_proj.weight": (("num_key_value_heads", *HEAD_DIM), ("hidden_size",)),
    "layers.0.self_attn.v_proj.weight": (("num_key_value_heads", *HEAD_DIM), ("hidden_size",)),
    "layers.0.self_attn.o_proj.weight": (("hidden_size",), ("num_attention_heads", *HEAD_DIM)),
    "layers.0.mlp.gate_proj.weight": (("intermediate_size",), ("hidden_size",)),
    "layers.0.mlp.up_proj.weight": (("intermediate_size",), ("hidden_size",)),
    "layers.0.mlp.down_proj.weight": (("hidden_size",), ("intermediate_size",)),
}
LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")


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
    shards = check_weights(folder)
    if isinstance(config, dict):
        check_shapes(folder, config, shards)
        check_target_modules(cfg, config.get("model_type"))


def check_weights(folder: Path) -> list[str]:
    """The folder's safetensors shards, each with a readable header (none when the weights are PyTorch pickles)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            raise RecipeError(f"{index} is unreadable: restore the model folder") from None
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    elif any(folder.glob("*.bin")):
        return []  # PyTorch pickles cannot be checked without loading them
    else:
        raise RecipeError(
            f"model.name={folder} has no weights (model.safetensors): copy the model's weight files into the folder"
        )
    for shard in shards:
        problem = weights_problem(folder / shard)
        if problem is not None:
            raise RecipeError(f"model.name={folder} {problem}: download or copy the model again")
    return shards


def header_shapes(path: Path) -> dict[str, list[int]]:
    """Each tensor's shape, from the safetensors header alone: an 8-byte length, then that much JSON."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


def config_size(config: dict, key: str) -> int | None:
    """config.json's ``key`` as transformers reads it (its defaults for head_dim and num_key_value_heads)."""
    if key == "head_dim" and config.get("head_dim") is None:
        heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
        return hidden // heads if isinstance(heads, int) and isinstance(hidden, int) and heads > 0 else None
    if key == "num_key_value_heads" and config.get(key) is None:
        key = "num_attention_heads"  # transformers' default: no grouped-query attention
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_shapes(folder: Path, config: dict, shards: list[str]) -> None:
    """config.json's sizes against the shapes its weights were saved with.

    Only for the model types the recipe knows (PROJECTIONS): others may name tensors alike with other shapes
    (a vision tower's layers) and are left to the load. Quantized weights are stored packed, in other shapes.
    """
    if config.get("model_type") not in PROJECTIONS or config.get("quantization_config"):
        return
    shapes = {}
    for shard in shards:
        shapes.update(header_shapes(folder / shard))
    fix = "restore the config.json that came with these weights, or download the model again"
    names = sorted(shapes)
    for suffix, dims in SHAPES.items():
        name = next((n for n in names if n == suffix or n.endswith("." + suffix)), None)
        sizes = [[config_size(config, key) for key in keys] for keys in dims]
        if name is None or any(None in size for size in sizes):
            continue
        expected, actual = [math.prod(size) for size in sizes], shapes[name]
        if actual == expected:
            continue
        # Name the sizes of the dimensions that differ; a head_dim config.json leaves out is hidden_size's share.
        differ = [keys for want, got, keys in zip(expected, actual, dims) if want != got]
        keys = [key for group in (differ if len(actual) == len(expected) else dims) for key in group]
        if config.get("head_dim") is None and "head_dim" in keys:
            keys[keys.index("head_dim") : keys.index("head_dim") + 1] = ["hidden_size", "num_attention_heads"]
        keys = list(dict.fromkeys(keys))
        named = ", ".join(f"{key}={config_size(config, key)}" for key in keys)
        raise RecipeError(
            f"model.name={folder}: config.json's {named} {'makes' if len(keys) == 1 else 'make'} {name} {expected}, "
            f"but the weights hold {actual}: {fix}"
        )
    layers = {int(match.group(1)) for name in shapes if (match := LAYER_RE.search(name))}
    declared = config_size(config, "num_hidden_layers")
    if layers and declared is not None and len(layers) != declared:
        raise RecipeError(
            f"model.name={folder}: config.json's num_hidden_layers={declared}, but the weights hold {len(layers)} layers: {fix}"
        )


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


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(endpoint: str, timeout: float | None = None) -> bool:
    """One HEAD request, no retries: any HTTP answer means the Hub is there."""
    if timeout is None:
        try:
            timeout = float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_PROBE_TIMEOUT_S)
        except ValueError:  # huggingface_hub would reject it too; the probe keeps its own default
            timeout = HUB_PROBE_TIMEOUT_S
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # URLError (DNS, refused), timeouts, a malformed HF_ENDPOINT
        return False
    return True


def in_hub_cache(repo_id: str, repo_type: str) -> bool:
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def use_hub_cache_only() -> None:
    """Offline mode for this process: the environment for libraries not imported yet, their
    module constants for those already imported (they read the variable once, at import)."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    if "datasets.config" in sys.modules:
        sys.modules["datasets.config"].HF_HUB_OFFLINE = sys.modules["datasets.config"].HF_DATASETS_OFFLINE = True


def hub_ids(cfg: Config, dataset: str | None) -> list[tuple[str, str, str]]:
    """(key, id, repo type) of each name that only the Hub can resolve."""
    needed = []
    if local_model(cfg) is None:
        needed.append(("model.name", cfg.model.name, "model"))
    if dataset and is_hub_dataset(dataset):
        needed.append(("data.dataset", dataset, "dataset"))
    return needed


def check_hub(cfg: Config, dataset: str | None = None) -> str | None:
    """Hub ids fail in seconds when the Hub cannot be reached, or run from the local cache if all are
    there; returns a line to print when it switches to the cache. ``dataset``: the one to be loaded."""
    from huggingface_hub import constants

    needed = hub_ids(cfg, dataset)
    if not needed or constants.is_offline_mode():
        return None
    endpoint = hub_endpoint()
    if hub_reachable(endpoint):
        return None
    missing = [(key, name) for key, name, kind in needed if not in_hub_cache(name, kind)]
    if missing:
        names = " and ".join(f"{key}={name}" for key, name in missing)
        keys = " and ".join(key for key, _ in missing)
        verb = "need" if len(missing) > 1 else "needs"
        raise RecipeError(
            f"{names} {verb} the Hugging Face Hub, and {endpoint} cannot be reached: set {keys} to a local "
            "folder or file (download it where the Hub is reachable), or run where it is reachable"
        )
    use_hub_cache_only()
    found = ", ".join(name for _, name, _ in needed)
    return f"{endpoint} cannot be reached: {found} from the local Hugging Face cache (HF_HUB_OFFLINE=1)"
