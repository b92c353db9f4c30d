"""Data: local files of every supported kind load, prompts have the chat shape, bad rows are dropped and counted."""

import json
from pathlib import Path

import pytest

import rewards
from recipe.config import DataConfig
from recipe.data import DROP_REASONS, build_prompts, dropped, load_rows, load_tokenizer, stop_token_ids
from recipe.errors import RecipeError

ROWS = [
    {"question": "Ann has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"},
    {"question": "A shop sells 1,234 pens a day. How many?", "answer": "It sells 1,234.\n#### 1,234"},
    {"question": "It is 5 degrees and drops 12. What now?", "answer": "5 - 12 = -7\n#### -7"},
    {"question": "Half of 7?", "answer": "7 / 2 = 3.5\n#### 3.5"},
    {"question": "No gold here?", "answer": "I do not know"},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_assets):
    return load_tokenizer(str(tiny_assets / "model"))


def write_rows(tmp_path: Path, kind: str, rows=ROWS) -> Path:
    import datasets

    data = datasets.Dataset.from_list(rows)
    path = tmp_path / f"rows.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "parquet":
        data.to_parquet(str(path))
    elif kind == "csv":
        data.to_csv(str(path))
    elif kind == "saved":
        datasets.DatasetDict({"train": data, "test": data.select([0])}).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "csv", "saved"])
def test_local_data_loads(tmp_path, kind):
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, kind))))
    assert rows["question"] == [r["question"] for r in ROWS]


def test_saved_dataset_folder_uses_the_split(tmp_path):
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, "saved")), split="test"))
    assert len(rows) == 1


HUB_STYLE_README = """---
configs:
- config_name: main
  data_files:
  - {split: train, path: main/train.jsonl}
- config_name: socratic
  data_files:
  - {split: train, path: socratic/train.jsonl}
---
"""


def write_folder(tmp_path: Path, files: dict[str, str | list[dict]]) -> Path:
    """A dataset folder holding ``files``: rows are written as JSON lines, text as it is."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        text = content if isinstance(content, str) else "".join(json.dumps(r) + "\n" for r in content)
        (folder / name).write_text(text)
    return folder


PLAIN_FILES = {"train.jsonl": ROWS, "test.jsonl": ROWS[:1]}
# (id, the folder's files, data.subset, data.split, the rows loaded or a fragment of the one-line error, {folder}
# standing for the folder). Regression: a folder of plain files with the default subset 'main' said
# "BuilderConfig 'main' not found ... fix the file", and a folder without data files said the same words.
FOLDERS = [
    ("plain-files-default-subset", PLAIN_FILES, "main", "train", 5),
    ("plain-files-no-subset", PLAIN_FILES, None, "test", 1),
    (
        "plain-files-other-subset",
        PLAIN_FILES,
        "socratic",
        "train",
        "data.subset=socratic is not a config of the dataset folder {folder}: set data.subset=null (the folder's configs: default)",
    ),
    (
        "missing-split",
        {"data.jsonl": ROWS},
        "main",
        "test",
        "data.dataset={folder} has no split 'test' (its splits: train): set data.split (eval_grpo.py: --split) to one of them",
    ),
    (
        "hub-style-configs",
        {"README.md": HUB_STYLE_README, "main/train.jsonl": ROWS, "socratic/train.jsonl": ROWS[:2]},
        "socratic",
        "train",
        2,
    ),
    (
        "hub-style-other-subset",
        {"README.md": HUB_STYLE_README, "main/train.jsonl": ROWS, "socratic/train.jsonl": ROWS[:2]},
        "default",
        "train",
        "set data.subset to one of the folder's configs: main, socratic",
    ),
    (
        "empty-folder",
        {},
        "main",
        "train",
        "data.dataset={folder} is a folder without data files (.jsonl, .json, .parquet, .csv)",
    ),
    ("only-notes", {"notes.txt": "hello\n"}, "main", "train", "data.dataset={folder} is a folder without data files"),
]


@pytest.mark.parametrize("files, subset, split, expected", [pytest.param(*row[1:], id=row[0]) for row in FOLDERS])
def test_a_dataset_folder_loads_its_config_or_says_which_to_set(tmp_path, files, subset, split, expected):
    folder = write_folder(tmp_path, files)
    data = DataConfig(dataset=str(folder), subset=subset, split=split)
    if isinstance(expected, int):
        assert len(load_rows(data)) == expected
    else:
        with pytest.raises(RecipeError) as error:
            load_rows(data)
        assert expected.format(folder=folder) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "dataset, message",
    [
        pytest.param("./missing.jsonl", "no such file or folder", id="missing-relative-path"),
        pytest.param("/nowhere/gsm8k", "no such file or folder", id="missing-absolute-path"),
        pytest.param("data.jsonl", "no such file or folder", id="missing-file-by-suffix"),
    ],
)
def test_missing_local_data_fails_clearly(dataset, message):
    with pytest.raises(RecipeError, match=message):
        load_rows(DataConfig(dataset=dataset))


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("hello")
    with pytest.raises(RecipeError, match="unsupported file type"):
        load_rows(DataConfig(dataset=str(path)))


def test_unreachable_hub_says_to_use_a_local_path(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RecipeError, match="set data.dataset to a local"):
        load_rows(DataConfig())


@pytest.fixture
def prompts(tmp_path, tokenizer):
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, "jsonl"))))
    return build_prompts(rows, tokenizer, DataConfig(dataset="rows.jsonl"))


def test_prompt_is_system_then_user(prompts):
    dataset, _ = prompts
    assert dataset[0]["prompt"] == [
        {"role": "system", "content": rewards.SYSTEM_PROMPT},
        {"role": "user", "content": ROWS[0]["question"]},
    ]
    assert dataset[0]["question"] == ROWS[0]["question"]


def test_gold_answers_are_parsed_numbers(prompts):
    dataset, _ = prompts
    assert dataset["answer"] == ["5", "1234", "-7", "3.5"]


def test_rows_without_gold_are_dropped_and_counted(prompts):
    _, stats = prompts
    assert stats == {
        "rows": 5,
        "dropped_no_question": 0,
        "dropped_no_gold": 1,
        "dropped_gold_not_a_number": 0,
        "dropped_too_long": 0,
        "kept": 4,
        "longest_prompt_tokens": stats["longest_prompt_tokens"],
    }


# (id, question, answer, the gold kept or the reason the row is dropped)
GOLDS = [
    ("gsm8k-integer", "Q?", "1 + 1 = 2\n#### 2", "2"),
    ("thousands-and-dollar", "Q?", "#### $1,200.", "1200"),
    ("numeric-column", "Q?", 42, "42"),  # kept as text: datasets.map turned it back into a number before
    ("bare-number", "Q?", "-3.5", "-3.5"),
    ("fraction", "Q?", "#### 1/2", "dropped_gold_not_a_number"),  # trained as gold 2 before
    ("two-numbers", "Q?", "#### 3 or 4", "dropped_gold_not_a_number"),
    ("number-and-unit", "Q?", "#### 18 dollars", "dropped_gold_not_a_number"),
    ("bare-fraction", "Q?", "1/2", "dropped_gold_not_a_number"),
    ("no-number", "Q?", "I do not know", "dropped_no_gold"),
    ("empty-gold", "Q?", "#### ", "dropped_no_gold"),
    ("null-answer", "Q?", None, "dropped_no_gold"),
    ("empty-question", "", "#### 2", "dropped_no_question"),  # counted as "without a gold answer" before
    ("blank-question", "  ", "#### 2", "dropped_no_question"),
    ("null-question", None, "#### 2", "dropped_no_question"),
]


@pytest.mark.parametrize("question, answer, expected", [pytest.param(*row[1:], id=row[0]) for row in GOLDS])
def test_each_row_is_kept_with_one_number_or_dropped_under_its_reason(tokenizer, question, answer, expected):
    import datasets

    # One usable row (its answer of the same type: a column has one), so the table's row may be dropped.
    ok = {"question": "Keep me?", "answer": 1 if isinstance(answer, int) else "#### 1"}
    rows = datasets.Dataset.from_list([ok, {"question": question, "answer": answer}])
    dataset, stats = build_prompts(rows, tokenizer, DataConfig(dataset="x"))
    if expected.startswith("dropped_"):
        assert dataset["answer"] == ["1"] and stats[expected] == 1
        assert sum(stats[key] for key in DROP_REASONS) == 1, "counted under one reason only"
    else:
        assert dataset["answer"] == ["1", expected]


def test_the_data_line_names_each_reason_with_its_count():
    stats = {"dropped_no_question": 2, "dropped_no_gold": 0, "dropped_gold_not_a_number": 1, "dropped_too_long": 3}
    assert dropped(stats, 200) == (
        "dropped 2 without a question, 1 with a gold answer that is not one number (e.g. #### 1/2), 3 over 200 tokens"
    )
    assert dropped({key: 0 for key in DROP_REASONS}, 200) == "none dropped"


@pytest.mark.parametrize(
    "name, content",
    [
        ("zero-bytes.jsonl", b""),  # said only StopIteration before
        ("blank-lines.jsonl", b"\n \n"),
        ("empty-list.json", b"[]"),
        ("header-only.csv", b"question,answer\n"),
    ],
    ids=["zero-bytes", "blank-lines", "empty-json-list", "csv-header-only"],
)
def test_a_file_without_rows_says_empty(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecipeError, match=r"is empty \(no rows\)"):
        load_rows(DataConfig(dataset=str(path)))


ROW = b'{"question": "Q?", "answer": "#### 1"}\n'
# (id, file name, content, how the one-line error starts, {path} standing for the file). Regression: these said
# "DatasetGenerationError: An error occurred while generating the dataset" or "'str' object is not a mapping",
# naming no line.
DAMAGED = [
    (
        "unclosed-object",
        "rows.jsonl",
        ROW + b'{"question": "Q?", "answer": "#### 2"\n',
        "{path}:2: not valid JSON (Expecting ',' delimiter at column 38)",
    ),
    ("words", "rows.jsonl", ROW + b"not json at all\n", "{path}:2: not valid JSON (Expecting value at column 1)"),
    ("first-line", "rows.jsonl", b"garbage\n" + ROW, "{path}:1: not valid JSON (Expecting value at column 1)"),
    ("array-line", "rows.jsonl", ROW + b'["Q?", "#### 2"]\n', "{path}:2: a JSON array, not an object"),
    ("string-line", "rows.jsonl", ROW + b'"just text"\n', "{path}:2: a JSON string, not an object"),
    ("number-line", "rows.jsonl", ROW + b"42\n", "{path}:2: a JSON number, not an object"),
    (
        "cut-off-last-line",
        "rows.jsonl",
        ROW + b'{"question": "Q',
        "{path}:2: not valid JSON (Unterminated string starting at column 14)",
    ),
    ("json-lines-in-a-json-file", "rows.json", ROW + b"[1]\n", "{path}:2: a JSON array, not an object"),
    ("json-array-cut-off", "rows.json", b"[" + ROW.strip() + b",\n", "{path}:2: not valid JSON (Expecting value"),
    ("json-array-of-a-string", "rows.json", b"[" + ROW.strip() + b', "Q?"]', "{path}: item 2 is a JSON string"),
]


@pytest.mark.parametrize("name, content, start", [pytest.param(*row[1:], id=row[0]) for row in DAMAGED])
def test_a_damaged_json_row_is_named_by_its_line(tmp_path, name, content, start):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RecipeError) as error:
        load_rows(DataConfig(dataset=str(path)))
    message = str(error.value)
    assert message.startswith(start.format(path=path)) and "\n" not in message, message
    assert 'one JSON object, like {"question": "...", "answer": "... #### 42"}' in message


@pytest.mark.parametrize(
    "name, content",
    [
        # Regression: datasets logged "Failed to read schema from ..." above the one-line error.
        pytest.param("junk.parquet", b"not parquet at all", id="junk-parquet"),
        # datasets logged "Failed to load JSON from file ..." and two progress bars above it.
        pytest.param("rows.jsonl", ROW + b"not json at all\n", id="damaged-jsonl"),
    ],
)
def test_a_file_datasets_cannot_read_adds_no_line_of_its_own(tmp_path, capfd, name, content):
    import datasets

    path = tmp_path / name
    path.write_bytes(content)
    verbosity, bars = datasets.utils.logging.get_verbosity(), datasets.utils.are_progress_bars_disabled()
    with pytest.raises(RecipeError):
        load_rows(DataConfig(dataset=str(path)))
    assert capfd.readouterr().err == ""
    assert (datasets.utils.logging.get_verbosity(), datasets.utils.are_progress_bars_disabled()) == (verbosity, bars)


def test_over_long_prompts_are_dropped_never_truncated(tmp_path, tokenizer):
    long_question = {"question": "How many? " + "Count the apples again. " * 40, "answer": "#### 1"}
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, "jsonl", [*ROWS, long_question]))))
    dataset, stats = build_prompts(rows, tokenizer, DataConfig(dataset="x", max_prompt_length=120))
    assert stats["dropped_too_long"] == 1 and stats["kept"] == 4
    assert stats["longest_prompt_tokens"] <= 120
    assert long_question["question"] not in dataset["question"]


def test_limit_takes_the_first_rows(tmp_path, tokenizer):
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, "jsonl"))))
    dataset, stats = build_prompts(rows, tokenizer, DataConfig(dataset="x", limit=2))
    assert stats["rows"] == 2 and dataset["answer"] == ["5", "1234"]


def test_missing_column_names_the_fields_to_set(tmp_path, tokenizer):
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, "jsonl", [{"q": "x", "a": "#### 1"}]))))
    with pytest.raises(RecipeError, match="has no column 'question'.*set data.question_field"):
        build_prompts(rows, tokenizer, DataConfig(dataset="x"))


def test_no_usable_rows_is_an_error(tmp_path, tokenizer):
    rows = load_rows(DataConfig(dataset=str(write_rows(tmp_path, "jsonl", [ROWS[-1]]))))
    with pytest.raises(RecipeError, match="no usable questions"):
        build_prompts(rows, tokenizer, DataConfig(dataset="x"))


def test_stop_tokens_include_end_of_turn(tokenizer):
    ids = stop_token_ids(tokenizer)
    assert ids[0] == tokenizer.eos_token_id
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in ids
