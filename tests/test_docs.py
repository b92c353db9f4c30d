"""Every command the docs show names things that exist: scripts, files, --flags, --set keys, bench settings.

The commands are read from README.md, bench/README.md, the shipped configs' comments and the entry
scripts' docstrings, so a renamed flag, file or setting fails here instead of on a user's first try.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import learning  # noqa: E402

import bench  # noqa: E402
from recipe import distributed  # noqa: E402
from recipe.config import Config, load_config  # noqa: E402

CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in [ROOT / "config.yaml", *(ROOT / "configs").rglob("*.yaml")])
ENTRY_SCRIPTS = ["train_grpo.py", "eval_grpo.py", "offline.py", "plots.py", "bench/bench.py", "bench/learning.py"]
DOCS = ["README.md", "bench/README.md", *CONFIGS, *ENTRY_SCRIPTS]
# Folders a run writes or `offline.py` builds: named in commands, absent from a fresh clone.
GENERATED = ("outputs/", "assets/", "runs/", "/tmp/", "bench/.work/")
PROGRAMS = ("python", "pytest", "accelerate", "bash", "torchrun", "pip", "vllm", "ollama", "llama-quantize")


def command_lines(path: str) -> list[str]:
    """The shell commands a doc shows: code blocks and inline code of markdown, commented commands of
    a config, indented commands of a docstring; continuation lines joined, `&&` chains split."""
    text = (ROOT / path).read_text()
    if path.endswith(".md"):
        blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
        candidates = [line for block in blocks for line in block.splitlines()] + re.findall(r"`([^`\n]+)`", text)
    elif path.endswith(".yaml"):
        candidates = [line.lstrip("#") for line in text.splitlines() if line.lstrip().startswith("#")]
    else:
        candidates = (ast.get_docstring(ast.parse(text)) or "").splitlines()
    joined, pending = [], ""
    for line in candidates:
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        joined += [part.strip() for part in line.split("&&")]
    return [line for line in joined if words(line) and words(line)[0] in PROGRAMS]


def words(line: str) -> list[str]:
    """The command's words without leading VAR=value assignments and a trailing # comment."""
    try:
        parts = shlex.split(line, comments=True)
    except ValueError:
        return []
    while parts and re.fullmatch(r"[A-Z_]+=\S*", parts[0]):
        parts = parts[1:]
    return parts


COMMANDS = sorted({(path, line) for path in DOCS for line in command_lines(path)})


@functools.cache
def flags_of(script: str, subcommand: str | None = None) -> set[str]:
    """The --flags a script's --help lists."""
    argv = [sys.executable, str(ROOT / script), *([subcommand] if subcommand else []), "--help"]
    shown = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert shown.returncode == 0, shown.stderr
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", shown.stdout))


def script_and_args(parts: list[str]) -> tuple[str | None, list[str]]:
    """The project script a command runs and its arguments (None: another program's command)."""
    for i, word in enumerate(parts):
        if word.endswith((".py", ".sh")) and not word.startswith("-"):
            return word, parts[i + 1 :]
    return None, []


def option_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, word in enumerate(args[:-1]) if word == flag]


def env_value(line: str, name: str) -> str | None:
    match = re.search(rf"\b{name}=(\S+)", line)
    return match.group(1).strip("'\"") if match else None


def is_repo_path(word: str) -> bool:
    return bool(re.fullmatch(r"[\w./-]+\.(py|sh|yaml|yml|md|json|jsonl|txt)", word)) and not word.startswith(GENERATED)


def config_key_exists(dotted: str) -> bool:
    """A --set key names a field of the config's dataclasses, or of trl.GRPOConfig under training.trl."""
    section, _, rest = dotted.partition(".")
    if section == "rewards":
        return True  # checked by the config's own validation: any registered reward
    if dotted.startswith("training.trl."):
        from trl import GRPOConfig

        return rest.removeprefix("trl.") in {f.name for f in dataclasses.fields(GRPOConfig)}
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if section not in fields:
        return False
    return rest in {f.name for f in dataclasses.fields(fields[section].default_factory())}


@pytest.mark.parametrize("path, line", COMMANDS, ids=[f"{p}: {line[:60]}" for p, line in COMMANDS])
def test_a_documented_command_names_what_exists(path, line):
    parts = words(line)
    script, args = script_and_args(parts)
    if parts[0] == "pytest" or parts[:3] == ["python", "-m", "pytest"]:
        check_pytest(parts)
        return
    if script is None:
        return  # pip, vllm, ollama, llama-quantize: other programs' commands
    assert (ROOT / script).is_file(), f"{path}: {script} does not exist"
    for word in args:
        if is_repo_path(word):
            assert (ROOT / word).exists(), f"{path}: {word} does not exist"
    if script.endswith(".py"):
        subcommand = args[0] if args and not args[0].startswith("-") and script == "offline.py" else None
        known = flags_of(script, subcommand)
        unknown = [w.split("=")[0] for w in args if w.startswith("--") and w.split("=")[0] not in known]
        assert not unknown, f"{path}: {script} has no {unknown}"
    for assignment in option_values(args, "--set"):
        key = assignment.split("=")[0]
        assert config_key_exists(key), f"{path}: --set {key} is not a config key"
    if script == "bench/bench.py":
        for value in option_values(args, "--settings") + option_values(args, "--profile"):
            assert set(value.split(",")) <= set(bench.SETTINGS), f"{path}: unknown bench setting in {value}"
        for value in option_values(args, "--fit"):
            assert {item.split(":")[0] for item in value.split(",")} <= set(bench.SIZES), value
    if script == "bench/learning.py":
        for value in option_values(args, "--arms"):
            assert set(value.split(",")) <= set(learning.ARMS), f"{path}: unknown learning arm in {value}"
    if script == "bench/gpu_session.sh" and (arms := env_value(line, "LEARN_ARMS")):
        assert set(arms.split(",")) <= set(learning.ARMS), f"{path}: LEARN_ARMS names an unknown arm"
    if script == "bench/gpu_session.sh" and (sweep := env_value(line, "SWEEP")):
        assert set(sweep.split(",")) <= set(bench.SETTINGS), f"{path}: SWEEP names an unknown setting"
    if parts[0] in ("accelerate", "torchrun"):
        check_split(path, parts, args)


def check_pytest(parts: list[str]) -> None:
    """The test files it names exist, and its -k/-m expressions select at least one test."""
    args = parts[1:] if parts[0] == "pytest" else parts[3:]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert collected.returncode == 0 and re.search(r"::|\.py: [1-9]", collected.stdout), collected.stdout[-2000:]


def check_split(path: str, parts: list[str], args: list[str]) -> None:
    """A multi-process launch whose step cannot be split over its processes fails before training."""
    launcher = parts[: parts.index(next(w for w in parts if w.endswith(".py")))]
    processes = option_values(launcher, "--num_processes") + option_values(launcher, "--nproc_per_node")
    launch_config = option_values(launcher, "--config_file")
    if not processes and launch_config:
        processes = [str(yaml.safe_load((ROOT / launch_config[0]).read_text())["num_processes"])]
    cfg = load_config(option_values(args, "--config")[0], option_values(args, "--set"))
    distributed.per_device_batch(cfg, int(processes[0]))  # raises RecipeError when it does not divide


def test_every_doc_shows_commands():
    # The extractor itself: a doc whose commands were no longer found would pass every check above.
    assert set(DOCS) == {path for path, _ in COMMANDS}


@pytest.mark.parametrize(
    "line, problem",
    [
        pytest.param(
            "python evaluate.py --adapter outputs/x/adapter", "evaluate.py does not exist", id="renamed-script"
        ),
        pytest.param(
            "python bench/bench.py --settings default,nocompile", "unknown bench setting", id="removed-setting"
        ),
        pytest.param(
            "python bench/learning.py --arms previous,default --seeds 3", "unknown learning arm", id="removed-arm"
        ),
        pytest.param(
            "accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4 train_grpo.py --config config.yaml",
            "cannot be split over 4 processes",
            id="split-that-does-not-divide",
        ),
        pytest.param("python train_grpo.py --config config.yaml --dryrun", "has no ['--dryrun']", id="unknown-flag"),
        pytest.param(
            "python train_grpo.py --config config.yaml --set training.max_stepz=5", "not a config key", id="unknown-key"
        ),
        pytest.param("python train_grpo.py --config configs/nope.yaml", "does not exist", id="missing-config"),
    ],
)
def test_the_stale_references_this_test_exists_for_are_caught(line, problem):
    from recipe.errors import RecipeError

    with pytest.raises((AssertionError, RecipeError), match=re.escape(problem)):
        test_a_documented_command_names_what_exists("regression", line)


def test_the_config_table_names_every_key():
    # Regression: README's Config table left out model.merged_rollouts, model.vllm_compile and vllm:.
    readme = (ROOT / "README.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (.*) \|$", readme, re.MULTILINE)}
    for section in dataclasses.fields(Config):
        assert section.name in rows, f"README's Config table has no row for {section.name}"
        if section.name == "rewards":
            continue
        for key in dataclasses.fields(section.default_factory()):
            assert f"`{key.name}`" in rows[section.name], (section.name, key.name)


@pytest.mark.parametrize("path", CONFIGS + ["README.md"])
def test_defaults_are_said_to_live_in_recipe_config(path):
    # Regression: two configs sent readers to train_grpo.py's dataclasses after they moved.
    text = " ".join(line.lstrip("# ") for line in (ROOT / path).read_text().splitlines())
    for match in re.finditer(r"defaults[^.]{0,80}?(dataclasses|[\w/]+\.py)", text):
        said = text[match.start() : match.end() + 40]
        assert "recipe/config.py" in said, f"{path}: {said}"


def test_readme_is_a_guide_of_at_most_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("path", CONFIGS)
def test_a_config_documents_itself_briefly(path):
    # A header of at most 6 lines (what, which card, the command) and comments without dated figures.
    lines = (ROOT / path).read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    assert 1 <= header <= 6, f"{path}: a {header}-line header"
    dated = [line for line in lines if re.search(r"#.*\b20\d\d-[01]\d\b", line)]
    assert not dated, f"{path}: {dated}"
