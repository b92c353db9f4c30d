"""Checkpoint rotation (which folders of output.dir survive rotate_checkpoints, exactly) and the stop signals.

The rotation deletes files a resume depends on, so a rule off by one either deletes the newest
checkpoint (a resume then starts over) or deletes nothing (the disk fills). These rows build folders
the way runs.py judges them: complete means a recipe_complete.json marker listing every file's size.
"""

import signal
from pathlib import Path

import pytest

from recipe import runs

COMPLETE = (2, 4, 6, 8)
# An incomplete folder older than every complete one (a save cut off long ago) and one newer than all
# (the save being written, or cut off, right now): no marker, so runs.py does not count them.
INCOMPLETE = (1, 9)


def build(out: Path) -> None:
    for step in COMPLETE + INCOMPLETE:
        folder = out / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "optimizer.pt").write_bytes(b"x" * step)
        if step in COMPLETE:
            runs.write_marker(folder, step)


ROTATIONS = [
    # The newest complete checkpoint is never deleted; the newer incomplete one may still be written.
    pytest.param(1, ["checkpoint-8", "checkpoint-9"], id="keep-1-only-the-newest-complete"),
    # Incomplete folders older than the oldest kept go with the complete ones.
    pytest.param(3, ["checkpoint-4", "checkpoint-6", "checkpoint-8", "checkpoint-9"], id="keep-3-drops-2-and-older"),
    pytest.param(4, [f"checkpoint-{s}" for s in (1, 2, 4, 6, 8, 9)], id="keep-4-all-complete-fit"),
    # Fewer complete checkpoints than keep: nothing is deleted, not even the old incomplete one.
    pytest.param(5, [f"checkpoint-{s}" for s in (1, 2, 4, 6, 8, 9)], id="keep-5-more-than-there-are"),
]


@pytest.mark.parametrize("keep, remaining", ROTATIONS)
def test_rotate_checkpoints_keeps_exactly_the_newest_complete(tmp_path, keep, remaining):
    build(tmp_path)
    runs.rotate_checkpoints(tmp_path, keep)
    assert [p.name for p in runs.checkpoints(tmp_path)] == remaining
    # What is kept is still a checkpoint a resume takes: the newest complete one, whole.
    assert runs.latest_complete(tmp_path)[0] == tmp_path / "checkpoint-8"


@pytest.mark.parametrize(
    "first, second, exit_code",
    [
        pytest.param(signal.SIGINT, signal.SIGINT, 130, id="ctrl-c-twice"),
        pytest.param(signal.SIGTERM, signal.SIGTERM, 143, id="sigterm-twice"),
        # The exit code is the first signal's: the one that asked for the stop.
        pytest.param(signal.SIGTERM, signal.SIGINT, 143, id="sigterm-then-ctrl-c"),
    ],
)
def test_a_first_signal_asks_for_a_stop_and_a_second_aborts(first, second, exit_code, capsys):
    stop = runs.GracefulStop()
    stop.handle(first, None)  # called as the signal module would, without installing it in the test process
    # The first lets the step finish: nothing raised, the stop recorded for the callback to save and stop.
    assert stop.received == first and stop.exit_code == exit_code
    assert "signal again to abort now" in capsys.readouterr().out
    # A user who signals again wants out now, not after a step that may take minutes.
    with pytest.raises(KeyboardInterrupt):
        stop.handle(second, None)
    assert stop.received == first and stop.exit_code == exit_code
