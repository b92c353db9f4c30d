"""bench/fold_kernel.py: Unsloth's exact-fold kernel timed against variants of it, each checked to fold to the same
bits. Here with a CPU stand-in for the Triton kernel (written from unsloth_zoo 2026.10.7's _exact_merge_kernel);
the script itself needs a GPU."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

import fold_kernel  # noqa: E402

# The Triton kernel's signature line as unsloth_zoo 2026.10.7 writes it, inside its module's `if triton is not None:`.
KERNEL_SOURCE = """    @triton.jit
    def _exact_merge_kernel(
        W, A, B, counts, offsets, idx_out, val_out, checksum,
        N, K,
        sWe, sWn, sWk, sAe, sAr, sAk, sBe, sBn, sBr,
        scale, mode,
        R: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        if mode == 2:
            pass
"""


class StandIn:
    """_exact_merge_kernel[grid](...), one program at a time: program (pid_n, pid_k, e) is number
    (e * gn + pid_n) * gk + pid_k and writes its kept elements in its tile's row-major order from offsets[program].
    ``delta_factor`` and ``unfold_off`` make a faulty variant; ``registers``, what the compiled kernel Triton
    returns on a GPU reports (its interpreter returns None)."""

    def __init__(self, delta_factor: float = 1.0, unfold_off: int = 0, registers: int | None = None):
        self.delta_factor, self.unfold_off, self.registers = delta_factor, unfold_off, registers

    def __getitem__(self, grid):
        def run(w, a, b, counts, offsets, idx, val, checksum, n, k, *strides_scale_mode, R, BLOCK_N, BLOCK_K, **_):
            *_, scale, mode = strides_scale_mode
            delta = (b.float() @ a.float()) * scale * self.delta_factor
            gn, gk, experts = grid
            for e in range(experts):
                for pid_n in range(gn):
                    for pid_k in range(gk):
                        pid = (e * gn + pid_n) * gk + pid_k
                        rows = slice(pid_n * BLOCK_N, (pid_n + 1) * BLOCK_N)
                        cols = slice(pid_k * BLOCK_K, (pid_k + 1) * BLOCK_K)
                        tile, d = w[e, rows, cols], delta[e, rows, cols]
                        if mode == 2:
                            back = (tile.float() - d).to(tile.dtype)
                            back.view(torch.int16)[..., :1] += self.unfold_off
                            tile.copy_(back)
                            checksum += back.view(torch.int16).to(torch.int64).sum()
                            continue
                        new = (tile.float() + d).to(tile.dtype)
                        bad = (new.float() - d).to(tile.dtype).view(torch.int16) != tile.view(torch.int16)
                        if mode == 0:
                            counts[pid] = bad.sum()
                            checksum += tile.view(torch.int16).to(torch.int64).sum()
                            continue
                        r, c = torch.meshgrid(torch.arange(n)[rows], torch.arange(k)[cols], indexing="ij")
                        where = int(offsets[pid]) + torch.arange(int(bad.sum()))
                        idx[where] = ((e * n + r) * k + c)[bad].to(idx.dtype)
                        val[where] = tile[bad]
                        tile.copy_(new)
            return None if self.registers is None else types.SimpleNamespace(n_regs=self.registers)

        return run


def weights(dims=((40, 130), (33, 129), (70, 260)), b_scale=0.05):
    return fold_kernel.build_weights(dims, rank=4, b_scale=b_scale, scale=2.0, device="cpu", seed=0)


def variants(*more):
    unsloth = fold_kernel.Variant("unsloth 32x128/4", StandIn(registers=212), fold_kernel.UNSLOTH_TILE)
    return [unsloth, *more]


def clock(launches):
    launches()
    return 0.002, 0.001


def test_the_3b_folds_the_weights_unsloths_log_counted():
    # "exact merged rollout keeps ... of 2,774,532,096 weights" in every 3B row's log (gpu-2026-12-07m).
    dims = fold_kernel.shapes("3B", None)
    assert len(dims) == 252 and sum(n * k for n, k in dims) == 2_774_532_096
    assert dims[:7] == [
        (2048, 2048),
        (256, 2048),
        (256, 2048),
        (2048, 2048),
        (11008, 2048),
        (11008, 2048),
        (2048, 11008),
    ]
    assert fold_kernel.shapes("0.5B", 2) == fold_kernel.shapes("0.5B", None)[:14]


def test_const_mode_makes_mode_a_compile_time_constant_and_nothing_else():
    made = fold_kernel.const_mode_source(KERNEL_SOURCE)
    assert made.startswith("import triton\nimport triton.language as tl\n")
    assert "scale, mode: tl.constexpr,\n" in made and "@triton.jit\ndef _exact_merge_kernel(" in made
    assert made.replace("mode: tl.constexpr", "mode").split("\n", 4)[-1] == fold_kernel.textwrap.dedent(KERNEL_SOURCE)
    compile(made, "const_mode.py", "exec")


@pytest.mark.parametrize(
    "source",
    [KERNEL_SOURCE.replace("scale, mode,", "scale, pass_no,"), KERNEL_SOURCE + "    # scale, mode,\n"],
    ids=["renamed", "twice"],
)
def test_const_mode_refuses_a_kernel_it_was_not_written_against(source):
    with pytest.raises(ValueError, match="not the one bench/fold_kernel.py was written against"):
        fold_kernel.const_mode_source(source)


@pytest.mark.parametrize("tile", [(64, 128, 4), (16, 32, 4), (128, 64, 8)], ids=["taller", "smaller", "wider"])
def test_another_tile_folds_to_unsloths_bits_and_gives_the_weights_back(tile):
    ws = weights()
    original = [x.w.clone() for x in ws]
    ours = fold_kernel.Variant("tile", StandIn(), tile)
    runs = variants(ours)
    for round in range(3):
        for v in runs:
            fold_kernel.one_round(v, ws, clock, timed=round > 0)
    assert sum(int(x.kept[0].numel()) for x in ws) > 0  # the bits compared include kept elements
    assert all(not v.problems for v in runs), [v.problems for v in runs]
    assert all(torch.equal(x.w.view(torch.int16), o.view(torch.int16)) for x, o in zip(ws, original))
    assert ours.times == {p: [0.002, 0.002] for p in fold_kernel.PASSES}  # the warm-up round not counted
    assert ours.host["fold"] == [0.001, 0.001]


@pytest.mark.parametrize(
    "kernel, problem",
    [
        (StandIn(delta_factor=1.01), "folded bits differ"),
        (StandIn(unfold_off=1), "unfold not exact"),
    ],
    ids=["another-delta", "inexact-unfold"],
)
def test_a_variant_that_is_not_unsloths_is_named_and_the_next_starts_from_the_true_weights(kernel, problem):
    ws = weights()
    original = [x.w.clone() for x in ws]
    faulty, after = (
        fold_kernel.Variant("faulty", kernel, (64, 128, 4)),
        fold_kernel.Variant("after", StandIn(), (16, 32, 4)),
    )
    runs = variants(faulty, after)
    for v in runs:
        fold_kernel.one_round(v, ws, clock, timed=False)
    assert problem in faulty.problems
    assert not runs[0].problems and not after.problems
    assert all(torch.equal(x.w.view(torch.int16), o.view(torch.int16)) for x, o in zip(ws, original))


def test_kept_elements_are_compared_as_a_set_of_indices_and_bits():
    ws = weights(dims=((40, 130),))
    fold_kernel.one_round(variants()[0], ws, clock, timed=False)
    idx, bits = ws[0].kept
    shuffled = {
        "idx": idx.flip(0).to(torch.int32),
        "val": bits.flip(0).view(torch.bfloat16),
        "checksum_count": ws[0].checksum,
    }
    ws[0].w.copy_(ws[0].folded)
    assert fold_kernel.compare(ws[0], shuffled) is None
    shuffled["val"] = shuffled["val"].roll(1)
    assert fold_kernel.compare(ws[0], shuffled) == "kept elements differ"
    assert fold_kernel.compare(ws[0], {**shuffled, "checksum_count": ws[0].checksum + 1}) == "count's checksum differs"


def summary_of(copy_gb_s):
    ws = weights()
    runs = variants(fold_kernel.Variant("tile 64x128/8", StandIn(delta_factor=1.01), (64, 128, 8)))
    for round in range(2):
        for v in runs:
            fold_kernel.one_round(v, ws, clock, timed=round > 0)
    args = fold_kernel.argparse.Namespace(rank=4, b_scale=0.05, rounds=1)
    zoo = fold_kernel.argparse.Namespace(__file__=__file__)
    return fold_kernel.summarize(args, "a GPU", runs, ws, copy_gb_s, zoo), ws


def test_the_table_gives_each_pass_its_floor_and_each_variant_its_verdict():
    summary, ws = summary_of(copy_gb_s=0.001)
    elements = sum(x.w.numel() for x in ws)
    assert summary["floor_ms"] == {p: round(elements * b / 1e6 * 1e3, 3) for p, b in fold_kernel.PASS_BYTES.items()}
    unsloth, tile = summary["variants"]
    assert unsloth["ms"] == {p: 2.0 for p in fold_kernel.PASSES} and unsloth["ms_all_passes"] == 6.0
    assert unsloth["x_floor"] == round(6.0 / sum(summary["floor_ms"].values()), 2)
    assert unsloth["same_as_unsloth"] and not tile["same_as_unsloth"]
    lines = fold_kernel.markdown(summary).splitlines()
    assert lines[4].startswith("| unsloth 32x128/4 | 32x128 / 4 | 2.0 | 2.0 | 2.0 | 6.0 |")
    assert lines[4].endswith("| 1.0/1.0/1.0 | 212/212/212 | yes |")
    assert lines[5].endswith("| -/-/- | no: folded bits differ |")  # no registers where Triton reports none
    assert summary["kept_elements"] == sum(int(x.kept[0].numel()) for x in ws) > 0
    json.dumps(summary)


def test_without_a_measured_bandwidth_the_floors_are_left_blank():
    summary, _ = summary_of(copy_gb_s=None)
    assert set(summary["floor_ms"].values()) == {None} and summary["variants"][0]["x_floor"] is None
    assert "| 6.0 | - |" in fold_kernel.markdown(summary)


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--size", "4B"], "argument --size: invalid choice: '4B'"),
        (["--rounds", "0"], "--rounds and --layers take a positive number"),
        (["--layers", "0"], "--rounds and --layers take a positive number"),
        ([], "needs a CUDA GPU and the pinned GPU stack (requirements.txt)"),
    ],
    ids=["unknown-size", "no-rounds", "no-layers", "no-gpu"],
)
def test_bad_arguments_stop_before_anything_is_built(monkeypatch, capsys, argv, said):
    monkeypatch.setattr(sys, "argv", ["fold_kernel.py", *argv])
    monkeypatch.setattr(fold_kernel, "load_zoo", lambda: pytest.fail("loaded unsloth_zoo"))
    with pytest.raises(SystemExit) as stop:
        fold_kernel.main()
    assert stop.value.code == 2 and said in capsys.readouterr().err
