"""GSM8K-style questions as chat prompts: loading rows, the prompt, the tokenizer and its stop tokens."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import rewards
from recipe import gsm_symbolic
from recipe.config import DataConfig
from recipe.errors import RecipeError, first_line
from recipe.jsonl import DamagedJsonl, invalid_json, json_kind, read_jsonl

LOCAL_DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# Why a row is left out, as counted in build_prompts' stats and said in the data line of both entry points.
DROP_REASONS = {
    "dropped_no_question": "without a question",
    "dropped_no_gold": "without a gold answer",
    "dropped_gold_not_a_number": "with a gold answer that is not one number (e.g. #### 1/2)",
    "dropped_too_long": "over data.max_prompt_length tokens",
}


def is_hub_dataset(name: str) -> bool:
    """Whether load_rows takes ``name`` as a hub id: no such path, and nothing that reads as one."""
    path = Path(name).expanduser()
    if name == gsm_symbolic.NAME or path.exists():
        return False
    return not (name.startswith((".", "/", "~")) or path.suffix in LOCAL_DATA_SUFFIXES)


def load_rows(cfg: DataConfig):
    """The raw question/answer rows: a hub id, a local data file, a local dataset folder or gsm-symbolic."""
    import datasets

    if cfg.dataset == gsm_symbolic.NAME:
        return gsm_symbolic.load(cfg.limit, cfg.question_field, cfg.answer_field)

    path = Path(cfg.dataset).expanduser()
    try:
        if path.is_file():
            kind = LOCAL_DATA_SUFFIXES.get(path.suffix)
            if kind is None:
                raise RecipeError(
                    f"data.dataset={cfg.dataset}: unsupported file type; use one of {', '.join(LOCAL_DATA_SUFFIXES)}"
                )
            if blank(path):
                raise empty(cfg)
            with quiet_datasets():
                return not_empty(datasets.load_dataset(kind, data_files=str(path), split="train"), cfg)
        if path.is_dir():
            with quiet_datasets():
                if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                    saved = datasets.load_from_disk(str(path))
                    return not_empty(saved[cfg.split] if isinstance(saved, datasets.DatasetDict) else saved, cfg)
                return not_empty(datasets.load_dataset(str(path), folder_subset(path, cfg), split=cfg.split), cfg)
        if not is_hub_dataset(cfg.dataset):
            raise RecipeError(f"data.dataset={cfg.dataset}: no such file or folder")
        return datasets.load_dataset(cfg.dataset, cfg.subset, split=cfg.split)
    except RecipeError:
        raise
    except Exception as error:  # datasets raises many types for unreachable hubs and bad files
        first = first_line(error, 200)
        if path.exists() and "corresponds to no data" in first:  # datasets' words for a file without rows
            raise empty(cfg) from None
        # datasets names no line of a JSON file it cannot read: read it again, line by line, only now that it failed.
        where = json_damage(path) if path.is_file() and LOCAL_DATA_SUFFIXES.get(path.suffix) == "json" else None
        if where is not None:
            example = f'{{"{cfg.question_field}": "...", "{cfg.answer_field}": "... #### 42"}}'
            raise RecipeError(
                f"{where}: fix it (each row is one JSON object, like {example}) or point data.dataset at another file"
            ) from None
        if path.exists():
            encoding = (
                " (is it UTF-8 text?)" if "utf-8" in repr(error).lower() or "decode" in repr(error).lower() else ""
            )
            raise RecipeError(
                f"could not read data.dataset={cfg.dataset}{encoding} ({type(error).__name__}: {first}): "
                "fix the file or point data.dataset at another one"
            ) from None
        raise RecipeError(
            f"could not load data.dataset={cfg.dataset} ({type(error).__name__}: {first}); "
            "if the Hugging Face Hub is unreachable, download the dataset elsewhere and set data.dataset "
            "to a local .jsonl/.parquet file or dataset folder"
        ) from None


@contextlib.contextmanager
def quiet_datasets():
    """datasets' log lines and progress bars off while a local file or folder is read: it takes moments, and a
    file datasets cannot read is said in load_rows' one line, not also in datasets' words above it."""
    import datasets

    verbosity, bars_off = datasets.utils.logging.get_verbosity(), datasets.utils.are_progress_bars_disabled()
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.utils.logging.set_verbosity(verbosity)
        if not bars_off:
            datasets.enable_progress_bars()


def json_damage(path: Path) -> str | None:
    """``<file>:<line>: <problem>`` for the first row of a .json/.jsonl file that is not a JSON object, or None.

    A .json file is one JSON array of rows, or JSON Lines as a .jsonl file is (datasets reads both).
    """
    text = path.read_bytes()
    if text.lstrip().startswith(b"["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            return f"{path}:{error.lineno}: {invalid_json(error)}"
        except ValueError:
            return f"{path}: not UTF-8 text"
        if isinstance(items, list):
            bad = next((i for i, item in enumerate(items, 1) if not isinstance(item, dict)), None)
            return None if bad is None else f"{path}: item {bad} is {json_kind(items[bad - 1])}, not an object"
    try:
        read_jsonl(path, strict=True)
    except DamagedJsonl as damage:
        return str(damage)
    return None


def folder_subset(path: Path, cfg: DataConfig) -> str | None:
    """The config of a local dataset folder to load: data.subset, or in place of the default the folder's only one.

    The default subset is GSM8K's ('main'); a folder of plain files has one config, 'default', and no
    reason to be asked for GSM8K's. Any other subset or split it lacks is one line naming those it has.
    """
    import datasets

    if not any(p.suffix in LOCAL_DATA_SUFFIXES for p in path.rglob("*") if p.is_file()):
        raise RecipeError(
            f"data.dataset={cfg.dataset} is a folder without data files ({', '.join(LOCAL_DATA_SUFFIXES)}): "
            "put the question files in it (train.jsonl, test.jsonl) or point data.dataset at one file"
        )
    configs = datasets.get_dataset_config_names(str(path))
    subset = cfg.subset
    if len(configs) == 1 and subset in (None, DataConfig.subset):
        subset = configs[0]
    elif subset not in configs:
        fix = (
            f"set data.subset=null (the folder's configs: {configs[0]})"
            if len(configs) == 1
            else f"set data.subset to one of the folder's configs: {', '.join(configs)}"
        )
        raise RecipeError(f"data.subset={subset} is not a config of the dataset folder {cfg.dataset}: {fix}")
    splits = datasets.get_dataset_split_names(str(path), subset)
    # A split with a slice ("train[:100]") is datasets' to read.
    if cfg.split.isidentifier() and cfg.split not in splits:
        raise RecipeError(
            f"data.dataset={cfg.dataset} has no split '{cfg.split}' (its splits: {', '.join(splits)}): set data.split (eval_grpo.py: --split) to one of them"
        )
    return subset


def blank(path: Path) -> bool:
    """Nothing but whitespace (the datasets loaders fail on it with a bare StopIteration)."""
    size = path.stat().st_size
    return size == 0 or (size <= 4096 and not path.read_bytes().strip())


def empty(cfg: DataConfig) -> RecipeError:
    return RecipeError(f"data.dataset={cfg.dataset} is empty (no rows): point data.dataset at a file of questions")


def not_empty(rows, cfg: DataConfig):
    if len(rows) == 0:
        raise empty(cfg)
    return rows


def chat_prompt(question: str) -> list[dict[str, str]]:
    """The conversation the model sees: the format's system prompt, then the question."""
    return [{"role": "system", "content": rewards.SYSTEM_PROMPT}, {"role": "user", "content": question}]


def prompt_tokens(tokenizer, prompt: list[dict[str, str]]) -> int:
    """Tokens of a chat prompt as the model sees it, generation header included."""
    return len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))


def answer_text(answer: Any) -> str | None:
    """The answer column as text: a numeric column (42, 3.5) is a bare gold number; bool is never an answer."""
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer)
    return answer if isinstance(answer, str) else None


def gold_number(answer: Any) -> tuple[Decimal | None, str | None]:
    """(the gold number, None), or (None, the DROP_REASONS key saying why the answer has none).

    The gold as written after ``####`` must be one number, as rewards.parse_gold reads a bare answer:
    "#### 1/2" would otherwise train as gold 2 (the last number in it).
    """
    text = answer_text(answer)
    written = rewards.split_gsm8k(text)[1] if text else ""
    gold = rewards.parse_gold(written)
    if gold is not None:
        return gold, None
    return None, "dropped_no_gold" if rewards.parse_number(written) is None else "dropped_gold_not_a_number"


def dropped(stats: dict[str, int], max_prompt_length: int) -> str:
    """The rows left out, one count per reason ("none dropped" when all were kept)."""
    counts = [
        f"{stats[key]} {reason.replace('data.max_prompt_length', str(max_prompt_length))}"
        for key, reason in DROP_REASONS.items()
        if stats.get(key)
    ]
    return "dropped " + ", ".join(counts) if counts else "none dropped"


def build_prompts(rows, tokenizer, cfg: DataConfig) -> tuple[Any, dict[str, int]]:
    """Chat prompts with a parsed gold answer; drops (and counts by DROP_REASONS) the rows it cannot use."""
    for column in (cfg.question_field, cfg.answer_field):
        if column not in rows.column_names:
            raise RecipeError(
                f"data.dataset={cfg.dataset} has no column '{column}' (columns: {', '.join(rows.column_names)}): set data.question_field / data.answer_field"
            )
    if cfg.limit is not None:
        rows = rows.select(range(min(cfg.limit, len(rows))))
    stats = {"rows": len(rows)}

    def to_prompt(row: dict) -> dict:
        gold, reason = gold_number(row[cfg.answer_field])
        question = row[cfg.question_field]
        # A missing question has no text to train on; str(None) would train on the word "None".
        if not (isinstance(question, str) and question.strip()):
            reason = "dropped_no_question"
        prompt = chat_prompt("" if reason else question)
        # New column names: datasets.map keeps a same-named input column's type, so a numeric answer
        # column would turn the gold text back into numbers.
        return {
            "prompt": prompt,
            "question_text": "" if reason else question,
            "gold_text": None if reason else f"{gold:f}",
            "dropped": reason or "",
            "prompt_tokens": prompt_tokens(tokenizer, prompt),
        }

    try:
        prompts = rows.map(to_prompt, remove_columns=rows.column_names)
    except UnicodeError as error:  # pyarrow reads invalid bytes in; they fail only when the text is used
        raise RecipeError(
            f"could not read data.dataset={cfg.dataset}: it is not UTF-8 text ({error.reason}): save it as UTF-8"
        ) from None
    reasons = Counter(prompts["dropped"])
    stats.update({key: reasons[key] for key in DROP_REASONS})
    with_gold = prompts.filter(lambda row: not row["dropped"])
    kept = with_gold.filter(lambda row: row["prompt_tokens"] <= cfg.max_prompt_length)
    stats["dropped_too_long"] = len(with_gold) - len(kept)
    stats["kept"] = len(kept)
    stats["longest_prompt_tokens"] = max(kept["prompt_tokens"], default=0)
    if len(kept) == 0:
        raise RecipeError(
            f"no usable questions in data.dataset={cfg.dataset} ({stats}): check the answer column holds GSM8K answers ('... #### 42') and data.max_prompt_length"
        )
    kept = kept.remove_columns(["prompt_tokens", "dropped"])
    return kept.rename_columns({"question_text": "question", "gold_text": "answer"}), stats


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as error:  # transformers raises OSError, ValueError or hub errors for a bad name
        if Path(name).expanduser().is_dir():
            first = first_line(error, 160)
            raise RecipeError(
                f"could not load the tokenizer in model.name={name} ({type(error).__name__}: {first}): check its tokenizer files"
            ) from None
        raise RecipeError(
            f"could not load the tokenizer of model.name={name} ({type(error).__name__}); set model.name to a "
            "local model folder if the Hugging Face Hub is unreachable"
        ) from None
    if tokenizer.chat_template is None:
        raise RecipeError(
            f"the tokenizer of model.name={name} has no chat template: GRPO prompts here are chat messages, so use a model whose tokenizer ships one"
        )
    return tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the chat template's end-of-turn token: base models often end a turn without EOS."""
    ids = [tokenizer.eos_token_id]
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None and end_of_turn not in ids:
        ids.append(end_of_turn)
    return ids
