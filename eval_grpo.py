"""Score a trained GRPO adapter against its base model on GSM8K test, side by side.

    python eval_grpo.py --adapter outputs/qwen2.5-3b-grpo/adapter                  # all 1,319 test questions
    python eval_grpo.py --config config.yaml --adapter outputs/qwen2.5-3b-grpo/adapter --limit 200
    python eval_grpo.py --adapter outputs/qwen2.5-3b-grpo/adapter --ask "Which is bigger? 9.919 or 9.92?"
    python eval_grpo.py --adapter outputs/qwen2.5-3b-grpo/adapter --merge outputs/qwen2.5-3b-grpo/merged
    python eval_grpo.py --adapter outputs/qwen2.5-3b-grpo/adapter --gguf outputs/qwen2.5-3b-grpo/gguf   # llama.cpp, Ollama
    python eval_grpo.py --config config.yaml --base-only --limit 200                # the base model alone
    python eval_grpo.py --adapter outputs/qwen2.5-3b-grpo/adapter --dataset gsm-symbolic  # GSM-Symbolic, 200 questions

Offline on a CPU, after `python offline.py tiny && python train_grpo.py --config configs/tiny-cpu.yaml`:

    python eval_grpo.py --adapter outputs/tiny-cpu/adapter --dataset assets/tiny/data/test.jsonl
    python -m pytest tests/test_eval.py -q

--config defaults to the config.yaml the run saved next to its adapter. Both models answer zero-shot
with the training system prompt and greedy decoding; scoring uses rewards.py, so a completion is
judged exactly as during training. Results go to <adapter>/../eval: summary.json (accuracy,
strict-format rate, mean completion tokens and unparsable answers per model) and predictions.jsonl
(one row per question per model); a checkpoint's to eval-<checkpoint>, --base-only's to
<output.dir>/eval-base, and a folder holding another adapter's or dataset's results is never
overwritten: they go to eval-<dataset> beside it (printed). On a GPU (backend unsloth) vLLM generates, with the adapter as a
LoRA request; elsewhere transformers generates and PEFT switches the adapter off for the base pass.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import typing
from pathlib import Path

import rewards
from recipe import backend as backends
from recipe import gguf_export, gsm_symbolic, model_card, preflight, runs
from recipe.config import Config, DataConfig, add_override_argument, load_config
from recipe.data import DROP_REASONS, build_prompts, chat_prompt, dropped, load_rows, load_tokenizer, stop_token_ids
from recipe.errors import RecipeError, first_line
from recipe.generate import Completion, hf_complete
from recipe.jsonl import write_atomic, write_jsonl
from recipe.runs import model_key

MODELS = ("base", "trained")
MERGE_CHECK_QUESTIONS = 3
MERGE_CHECK_TOKENS = 32


def read_adapter_config(adapter: Path) -> dict:
    """adapter_config.json of a saved adapter; a run folder or a typo gets a hint instead."""
    config = adapter / "adapter_config.json"
    if config.is_file():
        try:
            found = json.loads(config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RecipeError(
                f"{config} is not valid JSON: the adapter's save was cut off or the file was edited; use another adapter or checkpoint"
            ) from None
        base = found.get("base_model_name_or_path") if isinstance(found, dict) else None
        if base is not None and not isinstance(base, str):
            raise RecipeError(
                f"{config}: base_model_name_or_path is {base!r}, not a model name: set it to the base model's hub id or folder"
            )
        return found
    hint = f" ({adapter / 'adapter'} looks like one)" if (adapter / "adapter" / "adapter_config.json").is_file() else ""
    what = "has no adapter_config.json" if adapter.is_dir() else "does not exist"
    raise RecipeError(
        f"--adapter {adapter} {what}: pass the adapter folder of a finished run, e.g. outputs/x/adapter{hint}"
    )


def check_adapter(adapter: Path, cfg: Config) -> None:
    """Reject a damaged adapter, or one that does not belong to the config's base model or fit vLLM's LoRA slots."""
    config = read_adapter_config(adapter)
    # train_grpo.py's marker records every file's size; an adapter from elsewhere has only its weights checked.
    marked = (adapter / runs.MARKER).is_file()
    problem = runs.folder_problem(adapter) if marked else runs.weights_problem(adapter / "adapter_model.safetensors")
    if problem is not None:
        raise RecipeError(
            f"--adapter {adapter} {problem}: pass another adapter or checkpoint folder "
            "(train_grpo.py --resume rebuilds a run's adapter/ from its last checkpoint)"
        )
    base = config.get("base_model_name_or_path")
    if base and model_key(base) != model_key(cfg.model.name):
        raise RecipeError(
            f"--adapter {adapter} was trained on {base}, but the config's model.name is {cfg.model.name}: pass the --config of that run (its output dir holds config.yaml)"
        )
    rank = max([int(config.get("r") or 0), *map(int, (config.get("rank_pattern") or {}).values())])
    if rank > cfg.lora.r:
        raise RecipeError(
            f"--adapter {adapter} has LoRA rank {rank}, above the config's lora.r={cfg.lora.r} (vLLM's max_lora_rank): pass the --config of that run or --set lora.r={rank}"
        )


def eval_data_config(cfg: Config, args: argparse.Namespace, held_out: bool = True) -> DataConfig:
    """The training data section pointed at the test split, with room for every prompt that fits the model."""
    data = cfg.data
    if held_out and args.dataset is None and Path(data.dataset).expanduser().is_file():
        raise RecipeError(
            f"data.dataset={data.dataset} is a single file, the one used for training: pass --dataset with the test file, e.g. --dataset assets/tiny/data/test.jsonl"
        )
    # Prompts are never truncated, so only what cannot fit next to the completion is dropped (and reported).
    budget = cfg.model.max_seq_length - args.max_new_tokens
    if budget <= 0:
        raise RecipeError(
            f"--max-new-tokens {args.max_new_tokens} leaves no room for a prompt in model.max_seq_length={cfg.model.max_seq_length}"
        )
    return dataclasses.replace(
        data, dataset=args.dataset or data.dataset, split=args.split, limit=args.limit, max_prompt_length=budget
    )


def eval_backend(cfg: Config) -> str:
    """backends.resolve_backend without its training-only objections.

    No optimizer runs here, and the transformers path loads plain 16/32-bit weights without vLLM,
    so a GPU run's config evaluates on a CPU as it is; backend=unsloth still needs the GPU.
    """
    plain = dataclasses.replace(cfg.model, fast_inference=False, load_in_4bit=False)
    return backends.resolve_backend(
        dataclasses.replace(cfg, model=plain, training=dataclasses.replace(cfg.training, optim="adamw_torch"))
    )


def judge(response: str, gold: str | None, tokens: int) -> dict:
    """One completion scored the way training scores it."""
    extracted = rewards.extract_answer(response)
    return {
        "response": response,
        "extracted": extracted,
        "correct": rewards.is_correct(response, gold),
        "strict_format": rewards.has_strict_format(response),
        "tokens": tokens,
    }


def score(responses: list[str], golds: list[str | None], tokens: list[int]) -> dict:
    """Accuracy, strict-format rate, mean completion tokens and unparsable answers of one model."""
    return summarize([judge(r, g, t) for r, g, t in zip(responses, golds, tokens, strict=True)])


def summarize(judged: list[dict]) -> dict:
    """score() of completions already judged."""
    n = len(judged)

    def rate(key: str) -> float:
        return sum(row[key] for row in judged) / n if n else 0.0

    return {
        "n": n,
        "correct": sum(row["correct"] for row in judged),
        "accuracy": rate("correct"),
        "strict_format": rate("strict_format"),
        "mean_tokens": rate("tokens"),
        "unparsable": sum(rewards.parse_number(row["extracted"]) is None for row in judged),
    }


def render(tokenizer, prompts: list[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def load_hf(name: str, adapter: Path | None, dtype, what: str | None = None):
    """The base model, wrapped with the adapter when there is one; on the GPU if there is one.

    A failure is one line naming ``what`` was loading (default model.name=``name``) and the cause.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except backends.LOAD_ERRORS as error:
        raise RecipeError(backends.weights_failure(what or f"model.name={name}", error)) from None
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter))
        except backends.LOAD_ERRORS as error:
            raise RecipeError(
                f"could not load --adapter {adapter} onto model.name={name} ({type(error).__name__}: {first_line(error, 200)}): pass the --config of the run that trained it"
            ) from None
    return model.to("cuda" if torch.cuda.is_available() else "cpu").eval()


def hf_generator(cfg: Config, adapter: Path | None, tokenizer, max_new_tokens: int, batch_size: int):
    """generate(prompts, "base" | "trained") with one copy of the base: PEFT switches the adapter off for the base."""

    import torch

    # Training's trl backend precision, so the scores describe the model that was trained.
    model = load_hf(cfg.model.name, adapter, torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    stop_ids = stop_token_ids(tokenizer)

    def generate(prompts: list[list[dict]], which: str) -> list[Completion]:
        off = model.disable_adapter() if which == "base" and adapter is not None else contextlib.nullcontext()
        with off:
            return hf_complete(
                model, tokenizer, render(tokenizer, prompts), max_new_tokens, stop_ids, batch_size, which
            )

    return generate


def vllm_generator(cfg: Config, adapter: Path | None, tokenizer, max_new_tokens: int):
    """generate(prompts, "base" | "trained") with Unsloth's vLLM engine; the adapter is a LoRA request."""
    # vLLM (fast_inference) is what gives the model load_lora and fast_generate; get_peft_model inside adds them.
    model, _ = backends.load_model_unsloth(
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, fast_inference=True))
    )
    from vllm import SamplingParams  # after unsloth, which patches vLLM on import

    params = SamplingParams(temperature=0, max_tokens=max_new_tokens, stop_token_ids=stop_token_ids(tokenizer))
    lora = model.load_lora(str(adapter.resolve())) if adapter is not None else None

    def generate(prompts: list[list[dict]], which: str) -> list[Completion]:
        outputs = model.fast_generate(
            render(tokenizer, prompts),
            sampling_params=params,
            lora_request=lora if which == "trained" else None,
            use_tqdm=True,
        )
        return [(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outputs]

    return generate


def make_generator(cfg: Config, backend: str, adapter: Path | None, tokenizer, args: argparse.Namespace):
    adapter = None if args.base_only else adapter
    if backend == "unsloth":
        return vllm_generator(cfg, adapter, tokenizer, args.max_new_tokens)
    return hf_generator(cfg, adapter, tokenizer, args.max_new_tokens, args.batch_size)


def score_models(generate, dataset, models: typing.Sequence[str]) -> tuple[dict, list[dict]]:
    """Per-model metrics and one prediction row per question per model."""
    prompts, questions, golds = list(dataset["prompt"]), list(dataset["question"]), list(dataset["answer"])
    metrics, rows = {}, []
    for which in models:
        texts, tokens = zip(*generate(prompts, which)) if prompts else ((), ())
        judged = [judge(t, g, n) for t, g, n in zip(texts, golds, tokens, strict=True)]
        metrics[which] = summarize(judged)
        rows += [{"model": which, "question": q, "gold": g, **j} for q, g, j in zip(questions, golds, judged)]
    return metrics, rows


def write_results(out: Path, summary: dict, rows: list[dict]) -> None:
    """predictions.jsonl, then summary.json, each written aside and renamed, so each file is whole whenever a kill
    comes; one between the two renames leaves the new predictions beside the previous summary of this evaluation."""
    with runs.writing(
        out, "free space or pass --out another folder, then evaluate again", elsewhere="pass --out another folder"
    ):
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(rows, out / "predictions.jsonl")
        write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def dataset_label(data: DataConfig) -> str:
    """A short name of the evaluation data: the file's stem, or the dataset's name and split."""
    path = Path(data.dataset).expanduser()
    if data.dataset == gsm_symbolic.NAME or path.is_file():
        return path.stem
    return f"{path.name if path.is_dir() else data.dataset.rstrip('/').rsplit('/', 1)[-1]}-{data.split}"


def evaluation_of(settings: dict, models: typing.Iterable[str]) -> tuple:
    """What tells two evaluations apart: the adapter, the data and split, and which models were scored."""

    def where(name):
        path = Path(name).expanduser() if isinstance(name, str) else None
        return str(path.resolve()) if path is not None and path.exists() else name

    return where(settings.get("adapter")), where(settings.get("dataset")), settings.get("split"), tuple(models)


def other_evaluation(folder: Path, this: tuple) -> bool:
    """Whether ``folder`` holds results that are not of ``this`` evaluation (unreadable ones count as other)."""
    summary = folder / "summary.json"
    if not summary.exists() and not (folder / "predictions.jsonl").exists():
        return False
    try:
        found = json.loads(summary.read_text(encoding="utf-8"))
        return evaluation_of(found["settings"], found["models"]) != this
    except (OSError, ValueError, KeyError, TypeError):
        return True


def results_folder(cfg: Config, adapter: Path | None, data: DataConfig, args: argparse.Namespace) -> Path:
    """Where this evaluation's results go, checked before any model loads; never over another evaluation's.

    By default eval/ next to the adapter (eval-<name> for a checkpoint, <output.dir>/eval-base for
    --base-only), or eval-<dataset> beside it when that one holds another adapter's or dataset's results.
    """
    models = MODELS[:1] if args.base_only else MODELS
    this = evaluation_of({"adapter": None if adapter is None else str(adapter), **vars(data)}, models)
    if args.out:
        out = Path(args.out).expanduser()
        if other_evaluation(out, this):
            raise RecipeError(f"--out {out} holds the results of another evaluation: pass a new folder")
        return out
    if args.base_only:
        default = Path(cfg.output.dir) / "eval-base"
    else:
        default = adapter.parent / ("eval" if adapter.name == "adapter" else f"eval-{adapter.name}")
    candidates = [default, default.with_name(f"{default.name}-{dataset_label(data)}")]
    candidates += [default.with_name(f"{candidates[1].name}-{n}") for n in range(2, 100)]
    return next(folder for folder in candidates if not other_evaluation(folder, this))


def format_table(metrics: dict[str, dict]) -> str:
    lines = [f"{'model':<8} {'accuracy':>9} {'strict format':>14} {'mean tokens':>12} {'unparsable':>11}"]
    for which, m in metrics.items():
        lines.append(
            f"{which:<8} {m['accuracy']:>9.1%} {m['strict_format']:>14.1%} {m['mean_tokens']:>12.1f} {m['unparsable']:>11}"
        )
    return "\n".join(lines)


def run_eval(
    cfg, backend: str, adapter: Path | None, tokenizer, data: DataConfig, args: argparse.Namespace, out: Path
) -> int:
    dataset, stats = build_prompts(load_rows(data), tokenizer, data)
    print(
        f"data {data.dataset} ({data.split}): {stats['kept']} questions of {stats['rows']} ({dropped(stats, data.max_prompt_length)}); results to {out}"
    )
    models = MODELS[:1] if args.base_only else MODELS
    metrics, rows = score_models(make_generator(cfg, backend, adapter, tokenizer, args), dataset, models)
    settings = {
        "model": cfg.model.name,
        "adapter": None if adapter is None else str(adapter),
        "dataset": data.dataset,
        "split": data.split,
        "n": stats["kept"],
        **{key: stats[key] for key in DROP_REASONS},
        "max_new_tokens": args.max_new_tokens,
        "decoding": "greedy",
        "backend": backend,
        "device": device_name(),
        "load_in_4bit": backend == "unsloth" and cfg.model.load_in_4bit,
    }
    if data.dataset == gsm_symbolic.NAME:
        settings["generated"] = gsm_symbolic.describe(data.limit)
    write_results(out, {"settings": settings, "models": metrics}, rows)
    print(f"\n{format_table(metrics)}\n\nwrote {out / 'summary.json'} and {out / 'predictions.jsonl'}")
    if adapter is not None and not args.base_only and out.resolve() == (adapter.parent / "eval").resolve():
        print(f"updated the model card {model_card.write_card(adapter, adapter.parent)}")
    return 0


def run_ask(cfg, backend: str, adapter: Path | None, tokenizer, args: argparse.Namespace) -> int:
    prompts = [chat_prompt(q) for q in args.ask]
    models = MODELS[:1] if args.base_only else MODELS
    generate = make_generator(cfg, backend, adapter, tokenizer, args)
    answers = {which: generate(prompts, which) for which in models}
    for i, question in enumerate(args.ask):
        print(f"\n=== {question}")
        for which in models:
            text, tokens = answers[which][i]
            print(f"--- {which} ({tokens} tokens, answer {rewards.extract_answer(text)!r})\n{text.strip()}")
    return 0


def merged_dtype(name: str):
    """The base checkpoint's own dtype (bf16 for Qwen2.5): the merged folder is the base, retuned."""
    import torch
    from transformers import AutoConfig

    dtype = getattr(AutoConfig.from_pretrained(name), "dtype", None)
    return getattr(torch, dtype) if isinstance(dtype, str) else (dtype or torch.float32)


def export_failure(flag: str, folder: Path, partial: Path | None = None):
    """runs.writing for an export: a failed write is one line naming ``flag`` ``folder`` (not the temporary
    folder it was writing into) and the fix; ``partial``, what it wrote, is removed."""
    return runs.writing(
        folder,
        f"nothing was kept: free space or pass {flag} another folder, then run the same command again",
        partial=partial,
        elsewhere=f"pass {flag} another folder",
    )


def merge(cfg, adapter: Path, out: Path, tokenizer, prompts: list[list[dict]], saving=None) -> tuple[int, int]:
    """Fold the adapter into the base weights, save, reload with plain transformers and compare greedy outputs.

    Done with transformers + PEFT on both backends: Unsloth's merged save needs its GPU model, while
    this needs only the 16-bit base; the merge itself is the same W + scale * B @ A either way.
    ``saving`` wraps the save (default: --merge's export_failure for ``out``); an export that merges into
    a temporary folder passes a no-op and handles the failure itself.
    Returns (prompts whose outputs match, prompts compared).
    """
    import torch

    # fp32 for the merge and both references, so the only difference left is rounding to the saved dtype.
    tuned = load_hf(cfg.model.name, adapter, torch.float32)
    texts, stop_ids = render(tokenizer, prompts), stop_token_ids(tokenizer)
    expected = hf_complete(tuned, tokenizer, texts, MERGE_CHECK_TOKENS, stop_ids, len(texts), "adapter")
    merged = tuned.merge_and_unload()
    # Saved models stop at the chat turn's end too, like generation here.
    merged.generation_config.eos_token_id = stop_ids
    # A new or empty folder (check_export_folder), removed on a failed write.
    with export_failure("--merge", out, partial=out) if saving is None else saving:
        merged.to(merged_dtype(cfg.model.name)).save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    del tuned, merged
    reloaded = load_hf(str(out), None, torch.float32, what=f"the merged model {out}")
    got = hf_complete(reloaded, tokenizer, texts, MERGE_CHECK_TOKENS, stop_ids, len(texts), "merged")
    return sum(a == b for a, b in zip(expected, got)), len(texts)


def merge_questions(tokenizer, data: DataConfig) -> list[list[dict]]:
    """The prompts merge() compares the adapter and the merged model on."""
    data = dataclasses.replace(data, limit=MERGE_CHECK_QUESTIONS)
    dataset, _ = build_prompts(load_rows(data), tokenizer, data)
    return list(dataset["prompt"])


def merge_mismatch(out: Path, matched: int, total: int, data: DataConfig) -> int:
    print(
        f"error: the merged model in {out} answers {total - matched} of {total} questions of {data.dataset} differently from the adapter (greedy, {MERGE_CHECK_TOKENS} tokens); do not use it",
        file=sys.stderr,
    )
    return 1


def run_merge(cfg, backend: str, adapter: Path, tokenizer, data: DataConfig, args: argparse.Namespace) -> int:
    import shutil

    out = Path(args.merge)
    try:
        matched, total = merge(cfg, adapter, out, tokenizer, merge_questions(tokenizer, data))
    except BaseException:
        # A Ctrl-C or a failed reload: a folder not yet compared with the adapter is none to use. It was new or
        # empty before (check_export_folder), so it holds nothing but this merge.
        shutil.rmtree(out, ignore_errors=True)
        raise
    if matched != total:
        return merge_mismatch(out, matched, total, data)
    model_card.write_card(out, adapter.parent, "merged", source=adapter)
    print(
        f"merged {adapter} into {out} (loads with AutoModelForCausalLM.from_pretrained); greedy output matches the adapter on {total} questions of {data.dataset}"
    )
    return 0


def run_gguf(cfg, adapter: Path, tokenizer, data: DataConfig, args: argparse.Namespace) -> int:
    """The merge, checked as --merge checks it, written as one GGUF file with an Ollama Modelfile and a card.

    Everything is written into <DIR>.partial and renamed to DIR once complete, so a failure leaves no half export.
    """
    import shutil
    import tempfile
    import time

    out = Path(args.gguf)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.perf_counter()
    prompts = merge_questions(tokenizer, data)  # a read, before the writes: its errors are not the disk's
    try:
        with export_failure("--gguf", out):
            partial.mkdir(parents=True)
            with tempfile.TemporaryDirectory(dir=partial) as merged:
                matched, total = merge(cfg, adapter, Path(merged), tokenizer, prompts, contextlib.nullcontext())
                if matched == total:
                    name = adapter.parent.resolve().name
                    written = gguf_export.write_gguf(
                        merged, tokenizer, partial / gguf_export.GGUF_FILE, args.gguf_type, name
                    )
            if matched != total:
                shutil.rmtree(partial)
                return merge_mismatch(out, matched, total, data)
            model_card.write_modelfile(partial, gguf_export.GGUF_FILE, args.max_new_tokens)
            note = gguf_export.card_note(args.gguf_type, out)
            model_card.write_card(partial, adapter.parent, "gguf", note, final=out, source=adapter)
            partial.replace(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    print(
        f"wrote {out / gguf_export.GGUF_FILE} ({args.gguf_type}, {written['architecture']}, {written['bytes'] / 1e6:.1f} MB), "
        f"{out / model_card.MODELFILE} and {out / model_card.CARD} in {time.perf_counter() - started:.0f} s; the merged weights "
        f"answer like the adapter on {total} questions of {data.dataset}\n"
        f"run it: ollama create grpo -f {out / model_card.MODELFILE} && ollama run grpo"
    )
    return 0


def check_export_folder(flag: str, folder: Path, no_adapter: bool) -> None:
    """An export goes from an adapter into a new (or empty) folder that can be created (runs.check_output_dir)."""
    if no_adapter:
        raise RecipeError(f"{flag} needs --adapter and cannot be combined with --base-only")
    runs.check_output_dir(folder, flag)
    if folder.is_dir() and any(folder.iterdir()):
        raise RecipeError(f"{flag} {folder} exists and is not empty: pass a new folder")


def resolve_paths(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """The adapter folder and the config: by default the one the run saved next to its adapter."""
    adapter = Path(args.adapter).expanduser() if args.adapter else None
    if args.out and Path(args.out).expanduser().is_file():
        raise RecipeError(f"--out {args.out} is a file: pass a folder for the results (it is created if missing)")
    if adapter is None and not args.base_only:
        raise RecipeError(
            "pass --adapter with the adapter folder of a finished run (e.g. outputs/x/adapter), or --base-only"
        )
    if adapter is not None:
        read_adapter_config(adapter)  # a wrong folder is the likelier mistake than a missing config
    for flag, folder in (("--merge", args.merge), ("--gguf", args.gguf)):
        if folder:
            check_export_folder(flag, Path(folder), adapter is None or args.base_only)
    config = args.config
    if config is None and adapter is not None and (adapter.parent / "config.yaml").is_file():
        config = str(adapter.parent / "config.yaml")
    if config is None:
        raise RecipeError(
            "pass --config with the config the adapter was trained with (the run's output dir holds it as config.yaml)"
        )
    return adapter, config


def parse_args(argv: typing.Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --base must not pass for --base-only
    )
    parser.add_argument("--config", help="the training config (default: config.yaml next to the adapter)")
    parser.add_argument("--adapter", help="the adapter folder of a run, e.g. outputs/x/adapter")
    add_override_argument(parser, "model.name=/models/qwen")
    parser.add_argument(
        "--dataset",
        help=f"evaluation data instead of data.dataset: hub id, local file, dataset folder, or {gsm_symbolic.NAME} (fresh GSM8K test variants, seed {gsm_symbolic.SEED}, --limit questions, default {gsm_symbolic.DEFAULT_SIZE}; needs reasoning-gym)",
    )
    parser.add_argument("--split", default="test", help="split of a hub dataset or dataset folder (default: test)")
    parser.add_argument("--limit", type=int, help="first N questions only")
    parser.add_argument(
        "--max-new-tokens", type=int, help="completion budget (default: training.max_completion_length)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="prompts per generate call on the transformers backend (default: 16)"
    )
    parser.add_argument(
        "--out", help="results folder (default: <adapter>/../eval; with --base-only <output.dir>/eval-base)"
    )
    parser.add_argument("--base-only", action="store_true", help="score the base model alone")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--ask",
        action="append",
        metavar="QUESTION",
        help="print the base and the trained answer to QUESTION (repeatable)",
    )
    mode.add_argument(
        "--merge", metavar="DIR", help="write base + adapter as one 16-bit model folder that plain transformers loads"
    )
    mode.add_argument(
        "--gguf",
        metavar="DIR",
        help=f"write base + adapter as one GGUF file for llama.cpp (DIR/{gguf_export.GGUF_FILE}) with an Ollama Modelfile and a model card",
    )
    parser.add_argument(
        "--gguf-type",
        choices=gguf_export.GGUF_TYPES,
        default="q8_0",
        help="--gguf's weights: q8_0 (default; half of f16's size) or f16 (the input llama-quantize needs for q4_k_m)",
    )
    return parser.parse_args(argv)


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends.quiet_hub()
    try:
        adapter, config = resolve_paths(args)
        cfg = load_config(config, args.overrides)
        for flag, value in (
            ("--limit", args.limit),
            ("--max-new-tokens", args.max_new_tokens),
            ("--batch-size", args.batch_size),
        ):
            if value is not None and value <= 0:
                raise RecipeError(f"{flag} {value}: must be positive")
        args.max_new_tokens = args.max_new_tokens or cfg.training.max_completion_length
        if adapter is not None:
            check_adapter(adapter, cfg)
        # Training's checks, before the tokenizer, data and model load: a damaged or mismatched folder is one line.
        preflight.check_model_folder(cfg)
        if args.gguf:
            gguf_export.check_installed()
        # Merging uses plain transformers + PEFT whatever the training backend was.
        backend = "trl" if args.merge or args.gguf else eval_backend(cfg)
        if backend == "unsloth":
            backends.import_unsloth(cfg.model)
        # Any questions will do for the merge's equality check, so a single training file is fine there.
        data = None if args.ask else eval_data_config(cfg, args, held_out=not (args.merge or args.gguf))
        out = None if args.ask or args.merge or args.gguf else results_folder(cfg, adapter, data, args)
        if note := preflight.check_hub(cfg, data and data.dataset):
            print(note, flush=True)
        tokenizer = load_tokenizer(cfg.model.name)
        if args.gguf:
            gguf_export.architecture(gguf_export.read_config(cfg.model.name), cfg.model.name)
            gguf_export.check_tokenizer(tokenizer)
            return run_gguf(cfg, adapter, tokenizer, data, args)
        if args.merge:
            return run_merge(cfg, backend, adapter, tokenizer, data, args)
        if args.ask:
            return run_ask(cfg, backend, adapter, tokenizer, args)
        return run_eval(cfg, backend, adapter, tokenizer, data, args, out)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Results are written aside and renamed, exports removed unless whole: nothing half-written stays.
        print("\nstopped; no half-written result or export was kept: run the same command again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
