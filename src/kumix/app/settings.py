"""Where Kumix keeps its state and which policy and extension roots it uses."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kumix.app.data_dir import chosen_data_dir, logs_dir_of
from kumix.core.errors import BadRequest

TYPE_CHECKING = False  # not typing's: importing typing costs each command ~6 ms; type checkers read this as true
if TYPE_CHECKING:
    from kumix.extensions.policy import Policy

DEFAULT_POLICY = "strict"
"""`kumix.extensions.policy.DEFAULT_POLICY`, named here so resolving settings (every command,
`--version` included) does not load the policy code; a test keeps the two equal."""

ENV_POLICY = "KUMIX_POLICY"
ENV_EXTENSIONS_PATH = "KUMIX_EXTENSIONS_PATH"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    policy: str = DEFAULT_POLICY
    extension_roots: tuple[Path, ...] = field(default_factory=tuple)

    @classmethod
    def resolve(
        cls,
        *,
        data_dir: str | None = None,
        policy: str | None = None,
        extension_roots: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """Command-line values win over the environment, which wins over defaults."""
        env = os.environ if env is None else env
        roots = list(extension_roots)
        if not roots and env.get(ENV_EXTENSIONS_PATH):
            roots = [p for p in env[ENV_EXTENSIONS_PATH].split(":") if p]
        return cls(
            data_dir=chosen_data_dir(data_dir, env),
            policy=policy or env.get(ENV_POLICY) or DEFAULT_POLICY,
            extension_roots=tuple(Path(r).expanduser() for r in roots),
        )

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def logs_dir(self) -> Path:
        return logs_dir_of(self.data_dir)

    @property
    def scratch_dir(self) -> Path:
        return self.data_dir / "scratch"

    def ensure_data_dir(self) -> None:
        """Create the data directory; a path that cannot be one (a file, a missing or
        read-only parent) is the user's to fix, so it is a typed error, not a traceback."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BadRequest(f"data directory {str(self.data_dir)!r} cannot be used: {exc.strerror}") from None


def load_policy(name_or_path: str) -> Policy:
    """A bundled policy by name, or a policy file (`invalid_policy` when it is broken)."""
    from kumix.extensions.policy import load_policy as load

    return load(name_or_path)


SCHEMA_FILES = ("manifest.schema.json", "policy.schema.json")


def schema_bytes(name: str) -> bytes:
    """The JSON Schema file of manifests or policies, as shipped."""
    from kumix.extensions.jsondoc import SCHEMAS_DIR

    return (SCHEMAS_DIR / name).read_bytes()
