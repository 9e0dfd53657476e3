"""Which data directory a process uses, and where its logs go: the rule `Settings.resolve`
applies, in a module light enough for a command to apply it before it has parsed its
arguments (kumix.app.early_start: the fork server is launched first, with its log there).

`early_data_dir_name` is the same rule on strings with `os.path`, for that early launch:
pathlib and typing are 10-25 ms of imports it would otherwise wait for. It may differ from
`chosen_data_dir` only where pathlib raises (`~nosuchuser`, no home directory), and the launch
is checked against the settings afterwards (`early_start.fits`), so a difference costs at most
a second launch, never a wrong directory.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is one of the imports this module avoids
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

ENV_DATA_DIR = "KUMIX_DATA_DIR"


def default_data_dir(env: Mapping[str, str]) -> Path:
    from pathlib import Path

    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "kumix"


def chosen_data_dir(option: str | None, env: Mapping[str, str]) -> Path:
    """The command line's value wins over the environment, which wins over the default."""
    from pathlib import Path

    chosen = option or env.get(ENV_DATA_DIR) or None
    return Path(chosen).expanduser() if chosen else default_data_dir(env)


def logs_dir_of(data_dir: Path) -> Path:
    return data_dir / "logs"


def early_data_dir_name(option: str | None, env: Mapping[str, str]) -> str:
    """`chosen_data_dir` without pathlib (see above)."""
    chosen = option or env.get(ENV_DATA_DIR) or None
    if chosen:
        return os.path.expanduser(chosen)
    xdg = env.get("XDG_DATA_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "kumix")


def early_logs_dir_name(data_dir: str) -> str:
    return os.path.join(data_dir, "logs")
