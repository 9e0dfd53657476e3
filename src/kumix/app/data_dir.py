"""Which data directory a process uses, and where its logs go: the rule `Settings.resolve`
applies, in a module light enough for a command to apply it before it has parsed its
arguments (kumix.app.early_start: the fork server is launched first, with its log there)."""

from __future__ import annotations

from collections.abc import Mapping  # not typing's: importing typing would delay the fork server's launch
from pathlib import Path

ENV_DATA_DIR = "KUMIX_DATA_DIR"


def default_data_dir(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "kumix"


def chosen_data_dir(option: str | None, env: Mapping[str, str]) -> Path:
    """The command line's value wins over the environment, which wins over the default."""
    chosen = option or env.get(ENV_DATA_DIR) or None
    return Path(chosen).expanduser() if chosen else default_data_dir(env)


def logs_dir_of(data_dir: Path) -> Path:
    return data_dir / "logs"
