"""What a trained model is, written next to it: README.md model cards and the Ollama Modelfile.

The card replaces TRL's boilerplate ("fine-tuned version of [None](...)") with the run's own facts:
the base model, the recipe's key settings, steps and wall time, the final training rewards, the
evaluation when eval_grpo.py has run, and how to load the files. It is read from what the run left in
its output folder (config.yaml, metrics.jsonl, eval/summary.json), so it can be rewritten at any time.
"""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import yaml

import rewards
from recipe.errors import first_line
from recipe.gguf_export import GGUF_FILE
from recipe.jsonl import read_jsonl, write_atomic
from recipe.runs import CARD, MARKER, saved_step
from recipe.tiny import ENDOFTEXT, IM_END

MODELFILE = "Modelfile"
REWARD_WINDOW = 10  # logged steps averaged for "final" rewards: one step's mean over a few completions is noisy
TAGS = ["grpo", "trl", "unsloth"]

# Ollama's Go template for the ChatML turns the recipe trains on. Ollama passes the Modelfile's SYSTEM
# both as .System and as a system message, so system messages are skipped in the loop.
OLLAMA_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""


NOTHING_READ = {"config": {}, "metrics": [], "eval": {}}


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_part(path: Path, read: typing.Callable[[Path], typing.Any], empty: typing.Any) -> typing.Any:
    """``read(path)``, or ``empty`` with a warning when it fails: the card is written as part of a save,
    which a damaged log or an edited config.yaml must not fail."""
    try:
        return read(path)
    except Exception as error:  # YAML, JSON, DamagedJsonl, UnicodeDecodeError, OSError: a card without this part
        warn(
            f"the model card leaves out {path}, which cannot be read ({type(error).__name__}: {first_line(error, 160)})"
        )
        return empty


def adapter_step(folder: Path) -> int | None:
    """The step the adapter in ``folder`` was saved at, from its completion marker (None without one)."""
    try:
        return saved_step(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_run(run: Path, weights: Path) -> dict:
    """The saved config (raw YAML mapping), the logged metrics and the evaluation summary, each empty if
    absent or unreadable (with a warning).

    An evaluation older than the adapter's weights scored an earlier adapter of the same folder, so it is left out.
    Metrics logged after the adapter's step describe training the adapter never had (a run resumed with
    max_steps lowered to an earlier checkpoint rebuilds its adapter there), so they are left out too.
    """
    config_file, summary_file = run / "config.yaml", run / "eval" / "summary.json"
    config = read_part(config_file, lambda p: yaml.safe_load(p.read_text(encoding="utf-8")) if p.is_file() else {}, {})
    current = summary_file.is_file() and (
        not weights.is_file() or summary_file.stat().st_mtime >= weights.stat().st_mtime
    )
    summary = read_part(summary_file, lambda p: json.loads(p.read_text(encoding="utf-8")), {}) if current else {}
    metrics = read_part(run / "metrics.jsonl", read_jsonl, [])
    step = adapter_step(weights.parent)
    if step is not None:
        metrics = [row for row in metrics if not isinstance(row.get("step"), int) or row["step"] <= step]
    return {
        "config": config if isinstance(config, dict) else {},
        "metrics": metrics,
        "eval": summary if isinstance(summary, dict) else {},
    }


def section(config: dict, name: str) -> dict:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def is_hub_id(name: str) -> bool:
    """owner/name that is not a local folder: what the Hub's base_model field accepts."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).expanduser().exists() and not name.startswith((".", "~"))


def front_matter(base: str, dataset: str, library: str, extra_tags: tuple[str, ...] = ()) -> str:
    meta: dict = {}
    if is_hub_id(base):
        meta["base_model"] = base
    meta["library_name"] = library
    meta["pipeline_tag"] = "text-generation"
    meta["tags"] = TAGS + list(extra_tags)
    if is_hub_id(dataset):
        meta["datasets"] = [dataset]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def link(name: str) -> str:
    return f"[{name}](https://huggingface.co/{name})" if is_hub_id(name) else f"`{name}` (a local folder)"


def wall_time(metrics: list[dict]) -> str:
    """Training time as TRL measured it (train_runtime, summed over resumed sessions), else the log's span."""
    runtimes = [row["train_runtime"] for row in metrics if isinstance(row.get("train_runtime"), (int, float))]
    times = [row["time"] for row in metrics if isinstance(row.get("time"), (int, float))]
    seconds = sum(runtimes) if runtimes else (max(times) - min(times) if len(times) > 1 else None)
    if seconds is None:
        return "not logged"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def final_rewards(metrics: list[dict]) -> tuple[list[tuple[str, float, float | None]], int]:
    """(reward, mean over the last REWARD_WINDOW logged steps, best possible) rows, and the steps averaged."""
    logged = [row for row in metrics if isinstance(row.get("reward"), (int, float))][-REWARD_WINDOW:]
    if not logged:
        return [], 0

    def mean(key: str) -> float | None:
        values = [row[key] for row in logged if isinstance(row.get(key), (int, float))]
        return sum(values) / len(values) if values else None

    rows = [("total", mean("reward"), sum(rewards.MAX_REWARD.values()))]
    for name, best in rewards.MAX_REWARD.items():
        if (value := mean(f"rewards/{name}/mean")) is not None:
            rows.append((name, value, best))
    return rows, len(logged)


def settings_table(config: dict, metrics: list[dict]) -> list[str]:
    model, lora, data, training = (section(config, key) for key in ("model", "lora", "data", "training"))
    steps = max((row["step"] for row in metrics if isinstance(row.get("step"), int)), default=None)
    planned = training.get("max_steps")
    rows = [
        ("base model", link(str(model.get("name", "?")))),
        (
            "training backend",
            f"{model.get('backend', 'auto')}, {'4-bit' if model.get('load_in_4bit') else '16-bit'} base weights",
        ),
        (
            "LoRA",
            f"rank {lora.get('r', '?')}, alpha {lora.get('alpha', '?')} on {', '.join(lora.get('target_modules') or ['?'])}",
        ),
        ("data", f"{data.get('dataset', '?')} ({data.get('split', 'train')})"),
        (
            "GRPO",
            f"{training.get('prompts_per_step', '?')} prompt(s) per step x {training.get('num_generations', '?')} completions, "
            f"temperature {training.get('temperature', '?')}, KL beta {training.get('beta', '?')}, loss {training.get('loss_type', '?')}",
        ),
        (
            "optimizer",
            f"{training.get('optim', '?')}, learning rate {training.get('learning_rate', '?')} ({training.get('lr_scheduler_type', '?')})",
        ),
        (
            "lengths",
            f"prompt <= {data.get('max_prompt_length', '?')}, completion <= {training.get('max_completion_length', '?')} tokens",
        ),
        ("steps", f"{steps if steps is not None else 'not logged'}" + (f" of max_steps {planned}" if planned else "")),
        ("wall time", wall_time(metrics)),
    ]
    return ["| setting | value |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)]


def rewards_section(metrics: list[dict]) -> list[str]:
    rows, steps = final_rewards(metrics)
    if not rows:
        return ["No training rewards were logged (metrics.jsonl is missing or has no reward rows)."]
    return [
        f"Mean of the last {steps} logged steps (metrics.jsonl; the total's best is {rows[0][2]:g}):",
        "",
        "| reward | final | best |",
        "|---|---|---|",
        *(f"| {name} | {value:.3f} | {best:g} |" for name, value, best in rows),
    ]


def eval_section(summary: dict, adapter: str) -> list[str]:
    if not summary.get("models"):
        return [
            f"Not evaluated yet: `python eval_grpo.py --adapter {adapter}` writes eval/summary.json and refreshes this card."
        ]
    settings = summary.get("settings", {})
    lines = [
        f"`eval_grpo.py` on {settings.get('dataset', '?')} ({settings.get('split', '?')}, {settings.get('n', '?')} questions), "
        f"greedy, at most {settings.get('max_new_tokens', '?')} new tokens, judged by the training rewards' parsing "
        f"(backend {settings.get('backend', '?')}, {settings.get('device', '?')}):",
        "",
        "| model | accuracy | strict format | mean tokens | unparsable |",
        "|---|---|---|---|---|",
    ]
    for which, m in summary["models"].items():
        lines.append(
            f"| {which} | {m.get('accuracy', 0):.1%} | {m.get('strict_format', 0):.1%} | {m.get('mean_tokens', 0):.1f} | {m.get('unparsable', '?')} |"
        )
    return lines


def prompt_section() -> list[str]:
    return [
        "It answers best with the system prompt it was trained with (`rewards.SYSTEM_PROMPT`), in ChatML,",
        f"and ends its turn with `{IM_END}`:",
        "",
        "```",
        rewards.SYSTEM_PROMPT.strip("\n"),
        "```",
    ]


def usage_section(kind: str, folder: Path, base: str, run: Path, rank: object) -> list[str]:
    adapter, merged, gguf_dir = run / "adapter", run / "merged", run / "gguf"
    if kind == "gguf":
        return [
            "Ollama, with the Modelfile beside the file (training system prompt, ChatML, greedy):",
            "",
            "```",
            f"ollama create grpo -f {folder / MODELFILE} && ollama run grpo",
            "```",
            "",
            "llama.cpp through llama-cpp-python (send the training system prompt yourself):",
            "",
            "```python",
            "import rewards",
            "from llama_cpp import Llama",
            "",
            f'llm = Llama("{folder / GGUF_FILE}")',
            'messages = [{"role": "system", "content": rewards.SYSTEM_PROMPT}, {"role": "user", "content": "What is 12 * 7?"}]',
            'print(llm.create_chat_completion(messages=messages, temperature=0)["choices"][0]["message"]["content"])',
            "```",
        ]
    lines = []
    if kind == "adapter":
        lines += [
            "PEFT (transformers):",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "{adapter}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{adapter}")',
            "```",
            "",
            'vLLM, the base model with this adapter as a LoRA module (ask for `"model": "grpo"`, stop at `<|im_end|>`):',
            "",
            "```",
            f"vllm serve {base} --enable-lora --max-lora-rank {rank} --lora-modules grpo={adapter}",
            "```",
            "",
        ]
    else:
        lines += [
            "transformers (`AutoModelForCausalLM.from_pretrained`) or vLLM; its generation config stops at `<|im_end|>`:",
            "",
            "```",
            f"vllm serve {folder}",
            "```",
            "",
        ]
    return lines + [
        "One merged 16-bit folder (transformers, vLLM), or one GGUF file with an Ollama Modelfile (llama.cpp, Ollama):",
        "",
        "```",
        f"python eval_grpo.py --adapter {adapter} --merge {merged}",
        f"python eval_grpo.py --adapter {adapter} --gguf {gguf_dir}",
        f"ollama create grpo -f {gguf_dir / MODELFILE} && ollama run grpo",
        "```",
    ]


def adapter_files_section(folder: Path) -> list[str]:
    lines = [
        "- `adapter_model.safetensors`, `adapter_config.json`: the trained LoRA weights and their PEFT config.",
        "- the tokenizer files and `chat_template.jinja`: the base model's tokenizer, as training used it.",
    ]
    if (folder / "training_args.bin").is_file():  # not in an adapter/ rebuilt from a checkpoint
        lines.append("- `training_args.bin`: TRL's training arguments (pickled); not needed to use the model.")
    lines.append(
        f"- `{MARKER}`: every file's size when the save finished, which `train_grpo.py --resume` and `eval_grpo.py` check."
    )
    if (folder / "ref").is_dir():
        lines.append(
            "- `ref/`: TRL's frozen reference adapter for the KL penalty (training.beta > 0), a copy of this adapter "
            "taken before the first step. Its LoRA B matrices are zero, so it computes exactly the base model. "
            "PEFT saves the adapter named `default` at the top level and any other in a folder named after it; "
            "loading this folder reads only the trained adapter at the top, so `ref/` is not needed to use the model."
        )
    return lines


def render_card(
    folder: Path,
    run: Path,
    kind: str,
    note: str = "",
    final: Path | None = None,
    found: dict | None = None,
    source: Path | None = None,
) -> str:
    """The card for ``folder`` (kind: adapter, merged or gguf) of the run in ``run``; ``final`` is where the
    folder ends up when it is written aside first, for the commands the card shows. ``found``: what
    read_run reads from ``run``, read when not given. ``source``: the adapter a merge or GGUF was made
    from (default: the run's adapter/; a checkpoint's is another step's)."""
    adapter_dir = folder if kind == "adapter" else source or run / "adapter"
    if found is None:
        found = read_run(run, adapter_dir / "adapter_model.safetensors")
    config, metrics = found["config"], found["metrics"]
    base = str(section(config, "model").get("name", "unknown"))
    dataset = str(section(config, "data").get("dataset", ""))
    adapter = str(run / "adapter")
    what = {
        "adapter": "A LoRA adapter (PEFT) for",
        "merged": "A merged 16-bit model (transformers) of",
        "gguf": "A GGUF file for llama.cpp and Ollama of",
    }[kind]
    library, tags = {"adapter": ("peft", ()), "merged": ("transformers", ()), "gguf": ("gguf", ("gguf",))}[kind]
    lines = [
        front_matter(base, dataset, library, tags),
        f"# {run.resolve().name}",
        "",
        f"{what} {link(base)} trained with GRPO (TRL's GRPOTrainer, DeepSeek-R1's recipe) and rule-based rewards",
        "to solve grade-school math problems and answer in the format `<reasoning>...</reasoning><answer>...</answer>`.",
        "",
    ]
    if note:
        lines += [note, ""]
    lines += ["## Training", "", *settings_table(config, metrics), ""]
    lines += ["## Training rewards", "", *rewards_section(metrics), ""]
    lines += ["## Evaluation", "", *eval_section(found["eval"], adapter), ""]
    lines += ["## Prompt", "", *prompt_section(), ""]
    rank = section(config, "lora").get("r", "?")
    lines += ["## Use", "", *usage_section(kind, final or folder, base, run, rank), ""]
    if kind == "adapter":
        lines += ["## Files", "", *adapter_files_section(folder), ""]
    return "\n".join(lines)


def write_card(
    folder: str | Path,
    run: str | Path,
    kind: str = "adapter",
    note: str = "",
    final: Path | None = None,
    source: Path | None = None,
) -> Path:
    """README.md in ``folder``, replacing what was there (TRL's boilerplate); returns its path.

    Best effort in what it reads: it is written while weights are saved (train_grpo.save_adapter, the
    exports), and a run's files it cannot read or render only leave their part out, with a warning on
    stderr. A failed write of the card itself raises, like any file of the folder being saved.
    """
    folder, run = Path(folder), Path(run)
    path = folder / CARD
    try:
        text = render_card(folder, run, kind, note, final, source=source)
    except Exception as error:  # a config.yaml edited into odd types: the card without the run's facts
        warn(f"the model card leaves out the facts of {run} ({type(error).__name__}: {first_line(error, 160)})")
        text = render_card(folder, run, kind, note, final, NOTHING_READ, source)
    write_atomic(path, text)
    return path


def quoted(text: str) -> str:
    """A Modelfile value in triple quotes, which Ollama's parser takes verbatim, newlines included."""
    if '"""' in text:
        raise ValueError(f"a Modelfile value cannot contain three double quotes: {text!r}")
    return f'"""{text}"""'


def modelfile(gguf_name: str, max_new_tokens: int) -> str:
    """Ollama's recipe for the exported GGUF: the training system prompt, ChatML and greedy decoding."""
    return "\n".join(
        [
            "# ollama create grpo -f Modelfile && ollama run grpo",
            f"FROM ./{gguf_name}",
            f"TEMPLATE {quoted(OLLAMA_TEMPLATE)}",
            f"SYSTEM {quoted(rewards.SYSTEM_PROMPT)}",
            f'PARAMETER stop "{IM_END}"',
            f'PARAMETER stop "{ENDOFTEXT}"',
            "# Greedy, as eval_grpo.py scores it: no sampling and no repetition penalty (Ollama's default is 1.1).",
            "PARAMETER temperature 0",
            "PARAMETER repeat_penalty 1",
            "# The completion budget: the export's --max-new-tokens (by default training.max_completion_length).",
            f"PARAMETER num_predict {max_new_tokens}",
            "",
        ]
    )


def write_modelfile(folder: str | Path, gguf_name: str, max_new_tokens: int) -> Path:
    path = Path(folder) / MODELFILE
    write_atomic(path, modelfile(gguf_name, max_new_tokens))
    return path
