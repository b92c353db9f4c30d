"""plots.py: PNGs from a real tiny run's metrics.jsonl, panels skipped when a metric is missing, clear errors."""

import json
import os
from pathlib import Path

import pytest

import plots

ALL_PNGS = ["rewards.png", "length.png", "kl.png", "step_time.png"]


@pytest.fixture
def metrics(trained_run) -> Path:
    """metrics.jsonl (and config.yaml) of the shared tiny training run; tests read it and write copies."""
    return trained_run / "metrics.jsonl"


def rewrite(metrics: Path, folder: Path, drop: tuple[str, ...]) -> Path:
    """A copy of the run's metrics (and config) with the keys in ``drop`` removed from every line."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in row.items() if k not in drop}) + "\n" for row in rows)
    )
    (folder / "config.yaml").write_text((metrics.parent / "config.yaml").read_text())
    return folder / "metrics.jsonl"


def is_png(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) >= 300


@pytest.mark.parametrize(
    "drop, expected",
    [
        ((), ALL_PNGS),
        (("kl",), ["rewards.png", "length.png", "step_time.png"]),
        (("completions/clipped_ratio", "completions/min_length", "completions/max_length"), ALL_PNGS),
        (("completions/mean_length", "step_time"), ["rewards.png", "kl.png"]),
    ],
    ids=["real-run", "no-kl", "length-without-extras", "no-length-no-time"],
)
def test_plots_of_what_the_run_logged(metrics, tmp_path, drop, expected):
    source = rewrite(metrics, tmp_path / "run", drop)
    paths = plots.plot_metrics(source, tmp_path / "plots")
    assert [p.name for p in paths] == expected
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(expected)
    assert all(is_png(p) for p in paths)


def test_command_writes_next_to_the_metrics_by_default(metrics, tmp_path, capsys):
    source = rewrite(metrics, tmp_path / "run", ())
    assert plots.main([str(source)]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "plots").iterdir()) == sorted(ALL_PNGS)
    assert "rewards.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found: pass the metrics.jsonl that train_grpo.py writes"),
        ('{"step": 3, "train_runtime": 9.0}\n', "holds no training steps yet"),
        ("step,reward\n1,0.5\n", ":1 is not JSON"),
        # Regressions: a file that is not text was a traceback (UnicodeDecodeError).
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", ":1 is not JSON"),
        (b"\xff\xfe\x00binary\n{}\n", ":1 is not JSON"),
        ('{"step": 1, "reward": 0.5}\n[1, 2]\n', ":2 is not JSON"),
    ],
    ids=["missing", "summary-line-only", "not-jsonl", "a-png", "not-utf8", "not-an-object"],
)
def test_bad_metrics_file_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "metrics.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert plots.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "plots").exists()


def test_out_that_is_a_file_is_one_line_before_reading_anything(metrics, tmp_path, capsys):
    # Regression: plots.py --out FILE was a traceback (FileExistsError) after reading the metrics.
    (tmp_path / "taken").write_text("mine")
    assert plots.main([str(metrics), "--out", str(tmp_path / "taken")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'taken'} is a file: pass --out a folder for the PNGs (it is created if missing)\n"
    )
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.parametrize(
    "code, why, advice",
    [
        pytest.param("ENOSPC", "the disk is full (0 bytes free)", plots.REDRAW, id="full"),
        pytest.param(
            "EACCES",
            "(PermissionError: Permission denied; 0 bytes free)",
            "fix the permissions or pass --out another folder",
            id="refused-names-plots-own-flag",
        ),
    ],
)
def test_a_failed_write_while_drawing_is_one_line_and_keeps_the_earlier_pngs(
    metrics, tmp_path, capsys, monkeypatch, code, why, advice
):
    import errno

    from recipe import jsonl, runs

    assert plots.main([str(metrics), "--out", str(tmp_path)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failed(fd):
        number = getattr(errno, code)
        raise (PermissionError if code == "EACCES" else OSError)(number, os.strerror(number))

    monkeypatch.setattr(jsonl.os, "fsync", failed)
    monkeypatch.setattr(runs, "free_space", lambda path: 0)
    assert plots.main([str(metrics), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write {tmp_path / 'rewards.png'}")
    assert err.rstrip("\n").endswith(f"{why}: {advice}"), err
    assert err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "no PNG half-written, none lost"


def test_a_last_line_still_being_written_is_left_out(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward": 0.1}\n{"step": 2, "reward": 0.2}\n{"step": 3, "rew')
    assert plots.read_steps(path) == [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.2}]


def test_steps_skip_the_summary_line_and_keep_the_latest_of_a_repeated_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [
        {"step": 1, "reward": 0.1},
        {"step": 2, "reward": 0.2},
        {"step": 2, "reward": 0.3},
        {"step": 2, "train_runtime": 5.0},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert plots.read_steps(path) == [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.3}]


@pytest.mark.parametrize(
    "values, window, expected",
    [
        ([3.0, 3.0, 3.0], 10, [3.0, 3.0, 3.0]),
        ([1.0, 5.0, 2.0], 1, [1.0, 5.0, 2.0]),
        ([0.0, 2.0], 3, [0.0, 2 / 1.5]),
        ([], None, []),
    ],
    ids=["constant-stays", "window-1-is-raw", "debiased-start", "empty"],
)
def test_smooth(values, window, expected):
    assert plots.smooth(values, window) == pytest.approx(expected)


@pytest.mark.parametrize("n, lag_at_most", [(20, 2), (300, 20)], ids=["short-run", "long-run"])
def test_trend_follows_a_noisy_rise_without_overshooting(n, lag_at_most):
    import random

    rng = random.Random(0)
    clean = [i / n for i in range(n)]
    trend = plots.smooth([c + rng.gauss(0, 0.1) for c in clean])
    assert max(abs(t - c) for t, c in zip(trend[n // 10 :], clean[n // 10 :])) < 0.1 + lag_at_most / n
    assert trend[-1] > 0.8 and trend[0] < 0.3
