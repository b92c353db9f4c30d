"""The exact fold's Triton kernel alone, on the 3B's 252 weights: each pass timed, Unsloth's kernel against variants.

    python bench/fold_kernel.py        # on a CUDA GPU with the pinned stack: bench/results/fold-kernel.{json,md}

Before each generation Unsloth folds the adapter into the 16-bit weights its vLLM shares with training, and
afterwards gives them back bit for bit (unsloth_zoo/merged_rollout_exact.py). One Triton kernel does the work,
run three times on each weight: count the elements whose round trip would not be exact, fold (keeping those
elements aside), unfold. In the 2026-12-07m profile that kernel took 21.7 ms of GPU time a step, 87 ms a
generation, about 9x what reading and writing the weights takes at the GPU's copy bandwidth. This times each
pass on random weights of the 3B's shapes with a rank-32 adapter, for Unsloth's kernel as it is and for
variants built from its own source at run time:

    tile BNxBK/W   Unsloth's kernel with another block per program: BN rows, BK columns, W warps
    const-mode     its source with `mode` a compile-time constant: one kernel per pass holding only that
                   pass's code and registers (Unsloth's holds all three and branches at run time)

Each element's sum over the rank runs in the same order in every variant, so every variant must fold to the
same bits, keep the same elements (in another order where its tile differs) and give back the exact weights:
the table says whether each did. Rounds take the variants in turns, so that the host's drift falls on all.
Only the kernel is timed: Unsloth's bookkeeping around it (recipe/batched_fold.py on its branch) is not.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import json
import math
import os
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from recipe import memory  # noqa: E402

RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench" / "results"))
UNSLOTH_TILE = (32, 128, 4)  # merged_rollout_exact's _BLOCK_N, _BLOCK_K and num_warps
# On an H100 (results/fold-kernel.md) Unsloth's tile takes 212-250 registers a thread, so 2 blocks (8 warps) fit an
# SM; with 8 warps the same tile takes 80-126 (2-3 blocks of 8 warps), and keeps the same programs, so the same
# store order. 64x128/4 and 128x128/8 spill (ptxas for sm_90, Triton 3.6) and are left out.
TILES = (UNSLOTH_TILE, (32, 128, 8), (16, 128, 4), (64, 128, 8), (32, 256, 8))
PASSES = ("count", "fold", "unfold")
MODE = {"count": 0, "fold": 1, "unfold": 2}  # the kernel's own mode numbers
# Bytes of weight each pass must move, per element of a 16-bit weight: count reads it, fold and unfold rewrite it.
PASS_BYTES = {"count": 2, "fold": 4, "unfold": 4}
CONST_MODE_FROM, CONST_MODE_TO = "scale, mode,", "scale, mode: tl.constexpr,"


def const_mode_source(source: str) -> str:
    """Unsloth's kernel (its decorated source) as a module of its own, with ``mode`` a compile-time constant."""
    source = textwrap.dedent(source)
    if source.count(CONST_MODE_FROM) != 1:
        raise ValueError(
            f"the kernel's signature has no single {CONST_MODE_FROM!r}: this unsloth_zoo is not the one "
            "bench/fold_kernel.py was written against"
        )
    return "import triton\nimport triton.language as tl\n\n\n" + source.replace(CONST_MODE_FROM, CONST_MODE_TO)


def load_const_mode_kernel(zoo, folder: Path):
    """The const-mode kernel, from a file (Triton's JIT reads its function's source back from the file)."""
    path = folder / "exact_merge_const_mode.py"
    path.write_text(const_mode_source(inspect.getsource(zoo._exact_merge_kernel.fn)))
    spec = importlib.util.spec_from_file_location("exact_merge_const_mode", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._exact_merge_kernel


def shapes(size: str, layers: int | None) -> list[tuple[int, int]]:
    """[out, in] of every projection the recipe's LoRA folds (7 a layer), in the model's order."""
    shape = memory.QWEN25_SHAPES[f"Qwen/Qwen2.5-{size}"]
    per_layer = [(out, in_) for in_, out in memory._linear_shapes(shape).values()]
    return per_layer * (layers or shape["num_hidden_layers"])


def variant_name(kind: str, tile: tuple[int, int, int]) -> str:
    rows, cols, warps = tile
    return f"{kind} {rows}x{cols}/{warps}"


@dataclass
class Variant:
    name: str
    kernel: object
    tile: tuple[int, int, int]
    times: dict = field(default_factory=lambda: {p: [] for p in PASSES})
    host: dict = field(default_factory=lambda: {p: [] for p in PASSES})
    registers: dict = field(default_factory=dict)  # per pass: registers a thread, as the GPU's loader reports them
    problems: list = field(default_factory=list)

    def flag(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


@dataclass
class Weight:
    """One projection: its weight as the fold sees it ([1, N, K]), the adapter, and what the reference fold gave."""

    w: object
    a: object
    b: object
    scale: float
    original: object = None
    folded: object = None  # Unsloth's folded bits, for the variants
    kept: tuple = None  # Unsloth's (indices, bits) of the kept elements, sorted by index
    checksum: int = None


def build_weights(dims, rank: int, b_scale: float, scale: float, device: str, seed: int) -> list[Weight]:
    """bf16 weights and adapters of these shapes, drawn as a trained model's are spread: the weights at 0.02, A at
    0.02 and B at ``b_scale``, small as the adapter is some steps into training (the elements kept are few)."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    weights = []
    for n, k in dims:
        w = (torch.randn(1, n, k, device=device, generator=g) * 0.02).to(torch.bfloat16)
        a = (torch.randn(1, rank, k, device=device, generator=g) * 0.02).to(torch.bfloat16)
        b = (torch.randn(1, n, rank, device=device, generator=g) * b_scale).to(torch.bfloat16)
        weights.append(Weight(w, a, b, scale, original=w.clone()))
    return weights


def grid(weight: Weight, tile: tuple[int, int, int]) -> tuple[int, int, int]:
    """Unsloth's grid (ExactFoldTarget.grid) for this tile: one program per block of the weight, per expert."""
    e, n, k = weight.w.shape
    return (-(-n // tile[0]), -(-k // tile[1]), e)


def launch(variant: Variant, weight: Weight, mode: int, counts, checksum, offsets=None, idx=None, val=None):
    """One pass of ``variant``'s kernel over one weight, with Unsloth's own arguments (ExactFoldTarget.launch);
    what Triton returns: the compiled kernel (None in its interpreter)."""
    block_n, block_k, warps = variant.tile
    w, a, b = weight.w, weight.a, weight.b
    _, n, k = w.shape
    return variant.kernel[grid(weight, variant.tile)](
        w, a, b, counts, counts if offsets is None else offsets, counts if idx is None else idx,
        counts if val is None else val, checksum,
        n, k,
        w.stride(0), w.stride(1), w.stride(2),
        a.stride(0), a.stride(1), a.stride(2),
        b.stride(0), b.stride(1), b.stride(2),
        weight.scale, mode,
        R=a.shape[1], BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=warps, enable_fp_fusion=False,
    )  # fmt: skip


def gpu_time(launches) -> tuple[float, float]:
    """A pass's time on the GPU (CUDA events) and the host's time to launch it."""
    import torch

    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    began = time.perf_counter()
    launches()
    host = time.perf_counter() - began
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3, host


def sorted_kept(idx, val) -> tuple:
    import torch

    order = torch.argsort(idx.long())
    return idx.long()[order], val[order].view(torch.int16)


def one_round(variant: Variant, weights: list[Weight], clock, timed: bool) -> None:
    """Count, fold and unfold every weight with ``variant``, each pass timed; then the kept elements put back
    (untimed, as Unsloth's unfold does after its kernel) and the variant's bits checked against Unsloth's.
    ``clock(launches)``: the pass's seconds on the GPU and the host's to launch it (``gpu_time``)."""
    import torch

    state = []
    for x in weights:
        programs = math.prod(grid(x, variant.tile))
        state.append({"counts": torch.empty(programs, dtype=torch.int32, device=x.w.device),
                      "checksum": torch.zeros(1, dtype=torch.int64, device=x.w.device)})  # fmt: skip

    def run(name: str, *stores: str) -> tuple[float, float]:
        """One pass over every weight, timed; ``stores``: the fold's offsets and kept-element buffers."""

        def launches():
            for x, s in zip(weights, state):
                compiled = launch(variant, x, MODE[name], s["counts"], s["checksum"], *(s[k] for k in stores))
            variant.registers[name] = getattr(compiled, "n_regs", None)

        return clock(launches)

    record = {"count": run("count")}
    for x, s in zip(weights, state):  # sized as Unsloth sizes its store: int32 indices below 2^31 elements
        kept = int(s["counts"].sum(dtype=torch.int64))
        s["checksum_count"] = int(s["checksum"].item())
        s["offsets"] = torch.cumsum(s["counts"], 0, dtype=torch.int64) - s["counts"]
        s["idx"] = torch.empty(kept, dtype=torch.int32 if x.w.numel() < 2**31 else torch.int64, device=x.w.device)
        s["val"] = torch.empty(kept, dtype=x.w.dtype, device=x.w.device)
    record["fold"] = run("fold", "offsets", "idx", "val")
    for x, s in zip(weights, state):
        if x.folded is None:  # the first round of the first variant, Unsloth's kernel as it is: the reference
            x.folded, x.kept, x.checksum = x.w.clone(), sorted_kept(s["idx"], s["val"]), s["checksum_count"]
            continue
        problem = compare(x, s)
        if problem:
            variant.flag(problem)
    for s in state:
        s["checksum"].zero_()
    record["unfold"] = run("unfold")
    for x, s in zip(weights, state):
        x.w.view(-1).index_copy_(0, s["idx"].long(), s["val"])
        if not torch.equal(x.w.view(torch.int16), x.original.view(torch.int16)):
            x.w.copy_(x.original)  # so that the next variant starts from the true weights
            variant.flag("unfold not exact")
    if timed:
        for p in PASSES:
            variant.times[p].append(record[p][0])
            variant.host[p].append(record[p][1])


def compare(x: Weight, s: dict) -> str | None:
    import torch

    if s["checksum_count"] != x.checksum:
        return "count's checksum differs"
    if not torch.equal(x.w.view(torch.int16), x.folded.view(torch.int16)):
        return "folded bits differ"
    idx, bits = sorted_kept(s["idx"], s["val"])
    if not (torch.equal(idx, x.kept[0]) and torch.equal(bits, x.kept[1])):
        return "kept elements differ"
    return None


def copy_bandwidth() -> float:
    """The GPU's device-to-device copy rate, bytes read and written, as bench.py measures its ceilings."""
    from bench import measure_ceilings

    return measure_ceilings()["copy_gb_s"]


def load_zoo():
    """unsloth_zoo's module, imported as a run imports it (unsloth first)."""
    import unsloth  # noqa: F401
    from unsloth_zoo import merged_rollout_exact

    return merged_rollout_exact


def summarize(args, device_name: str, variants: list[Variant], weights: list[Weight], copy_gb_s, zoo) -> dict:
    elements = sum(x.w.numel() for x in weights)
    floor = {p: elements * PASS_BYTES[p] / (copy_gb_s * 1e9) if copy_gb_s else None for p in PASSES}
    rows = []
    for v in variants:
        ms = {p: round(1e3 * statistics.median(v.times[p]), 3) if v.times[p] else None for p in PASSES}
        host = {p: round(1e3 * statistics.median(v.host[p]), 3) if v.host[p] else None for p in PASSES}
        total = round(sum(ms.values()), 3) if None not in ms.values() else None
        rows.append({
            "variant": v.name,
            "tile": list(v.tile),
            "ms": ms,
            "ms_all_passes": total,
            "host_ms_to_launch": host,
            "registers": {p: v.registers.get(p) for p in PASSES},
            "x_floor": round(total / (1e3 * sum(floor.values())), 2) if total and copy_gb_s else None,
            "same_as_unsloth": not v.problems,
            "problems": v.problems,
        })  # fmt: skip
    return {
        "date": time.strftime("%Y-%m-%d"),
        "device": device_name,
        "command": "python bench/fold_kernel.py " + " ".join(sys.argv[1:]),
        "unsloth_zoo_source_sha256": hashlib.sha256(Path(zoo.__file__).read_bytes()).hexdigest(),
        "weights": len(weights),
        "elements": elements,
        "rank": args.rank,
        "b_scale": args.b_scale,
        "kept_elements": sum(int(x.kept[0].numel()) for x in weights),
        "rounds": args.rounds,
        "copy_gb_s": copy_gb_s,
        "floor_ms": {p: round(1e3 * s, 3) if s else None for p, s in floor.items()},
        "variants": rows,
    }


def markdown(summary: dict) -> str:
    floor = summary["floor_ms"]
    lines = [
        f"The exact fold's kernel alone (`bench/fold_kernel.py`, {summary['date']}, {summary['device']}): "
        f"{summary['weights']} weights of {summary['elements']:,} elements, rank-{summary['rank']} adapters (B at "
        f"{summary['b_scale']}: {summary['kept_elements']:,} elements kept), the median of {summary['rounds']} rounds "
        f"with the variants in turns. Floors at {summary['copy_gb_s']} GB/s copy: count {floor['count']}, fold "
        f"{floor['fold']}, unfold {floor['unfold']} ms. A generation runs each pass once.",
        "",
        "| variant | tile (rows x cols / warps) | count ms | fold ms | unfold ms | all ms | x floor | host ms to launch "
        "(count/fold/unfold) | registers a thread | as Unsloth's |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["variants"]:
        n, k, w = r["tile"]
        host = "/".join(str(r["host_ms_to_launch"][p]) for p in PASSES)
        registers = "/".join("-" if r["registers"][p] is None else str(r["registers"][p]) for p in PASSES)
        same = "yes" if r["same_as_unsloth"] else "no: " + "; ".join(r["problems"])
        cells = [r["variant"], f"{n}x{k} / {w}", *(r["ms"][p] for p in PASSES), r["ms_all_passes"], r["x_floor"]]
        lines.append(
            "| " + " | ".join("-" if c is None else str(c) for c in cells) + f" | {host} | {registers} | {same} |"
        )
    return "\n".join(lines) + "\n"


def write(summary: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = [hub_id.removeprefix("Qwen/Qwen2.5-") for hub_id in memory.QWEN25_SHAPES]
    parser.add_argument("--size", default="3B", choices=sizes, help="the Qwen2.5 shape (default 3B)")
    parser.add_argument("--layers", type=int, help="only this many decoder layers (default: all)")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--b-scale", type=float, default=2e-5, help="spread of the adapter's B (default 2e-5)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after one of warm-up (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fold-kernel.json")
    args = parser.parse_args()
    if args.rounds < 1 or (args.layers is not None and args.layers < 1):
        parser.error("--rounds and --layers take a positive number")

    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU and the pinned GPU stack (requirements.txt): it times Unsloth's Triton kernel")
    zoo = load_zoo()
    folder = Path(tempfile.mkdtemp(prefix="fold-kernel-"))
    const_mode = load_const_mode_kernel(zoo, folder)
    variants = [  # Unsloth's kernel as it is first: the reference every other variant is checked against
        Variant(variant_name("unsloth" if tile == UNSLOTH_TILE else "tile", tile), zoo._exact_merge_kernel, tile)
        for tile in TILES
    ]
    variants += [Variant(variant_name("const-mode", tile), const_mode, tile) for tile in TILES]
    weights = build_weights(shapes(args.size, args.layers), args.rank, args.b_scale, 2.0, "cuda", seed=0)
    for round in range(1 + args.rounds):  # the first compiles every variant and is not timed
        for variant in variants:
            one_round(variant, weights, gpu_time, timed=round > 0)
        print(f"round {round} done", flush=True)
    summary = summarize(args, torch.cuda.get_device_name(), variants, weights, copy_bandwidth(), zoo)
    write(summary, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}\n{markdown(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
