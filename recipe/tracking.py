"""Experiment trackers for ``output.report_to``: which names are valid and whether their package is installed.

Transformers' own callbacks do the logging (TRL passes ``report_to`` on); this module only turns a typo
or a missing package into one line before anything heavy loads. metrics.jsonl is written either way.
"""

from __future__ import annotations

import configparser
import importlib.util
import netrc
import os
import typing
from pathlib import Path
from urllib.parse import urlsplit

from recipe.errors import RecipeError, closest

# Tracker name -> the package its transformers callback imports. All three log locally:
# TensorBoard to <output.dir>/runs/, W&B to <output.dir>/wandb/ (with WANDB_MODE=offline it never syncs),
# trackio to its local database (~/.cache/huggingface/trackio) unless a Space is asked for.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}
CHOICES = ("none", *TRACKERS)


def trackers(report_to: str | list[str]) -> list[str]:
    """The tracker names of ``output.report_to``: none -> [], one name -> [name]."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    return [name for name in names if name != "none"]


def check_names(report_to: str | list[str]) -> None:
    """Reject unknown names (with the closest valid one) and 'none' listed next to a tracker."""
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    for name in names:
        if name not in CHOICES:
            hint = closest(name, CHOICES, otherwise=f"use one of {', '.join(CHOICES)}")
            raise RecipeError(f"output.report_to: unknown tracker '{name}': {hint}")
    if "none" in names and len(names) > 1:
        raise RecipeError(f"output.report_to={names}: 'none' cannot be listed with trackers; drop it or use none alone")


def check_installed(report_to: str | list[str], find_spec: typing.Callable | None = None) -> None:
    """Refuse a tracker whose package is missing, or W&B without a key, before the model loads (transformers
    would fail mid-setup)."""
    find_spec = find_spec or importlib.util.find_spec
    for name in trackers(report_to):
        package = TRACKERS[name]
        if find_spec(package) is None:
            raise RecipeError(f"output.report_to={name} needs the {package} package: pip install {package}")
    if "wandb" in trackers(report_to) and not wandb_can_log():
        raise RecipeError(
            "output.report_to=wandb finds no W&B API key: set WANDB_API_KEY, run `wandb login` (it writes ~/.netrc), "
            "or set WANDB_MODE=offline to log locally"
        )


# W&B modes that never ask for a key.
WANDB_LOCAL_MODES = ("offline", "disabled", "dryrun")


def wandb_can_log() -> bool:
    """Whether wandb.init will find a key, or is told to stay local, read from where wandb 0.31 looks
    (environment, .netrc, its settings file) without importing it, which takes seconds."""
    settings = configparser.ConfigParser()
    try:
        settings.read(Path(os.environ.get("WANDB_CONFIG_DIR") or "~/.config/wandb").expanduser() / "settings")
    except configparser.Error:
        pass  # wandb refuses it too
    saved = settings["default"] if settings.has_section("default") else {}
    if (os.environ.get("WANDB_MODE") or saved.get("mode")) in WANDB_LOCAL_MODES:
        return True
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE") or saved.get("api_key"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or saved.get("base_url") or "https://api.wandb.ai").netloc
    path = os.environ.get("NETRC") or next(
        (p for p in ("~/.netrc", "~/_netrc") if Path(p).expanduser().exists()), "~/.netrc"
    )
    try:
        return netrc.netrc(Path(path).expanduser()).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def keep_logs_in(report_to: str | list[str], out: Path) -> None:
    """W&B writes to ./wandb of wherever it was started; put it in the run's folder unless WANDB_DIR says otherwise."""
    if "wandb" in trackers(report_to):
        os.environ.setdefault("WANDB_DIR", str(out.resolve()))


def where(report_to: str | list[str], out: Path) -> str:
    """One line saying where each tracker's logs go, for the run's plan."""
    places = {
        "tensorboard": f"tensorboard --logdir {out / 'runs'}",
        "wandb": f"W&B run in {os.environ.get('WANDB_DIR', out)}/wandb (WANDB_MODE=offline keeps it local; wandb sync uploads)",
        "trackio": "trackio's local database (trackio show opens it)",
    }
    return "; ".join(places[name] for name in trackers(report_to)) or "metrics.jsonl only (output.report_to=none)"
