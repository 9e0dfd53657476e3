"""The Landlock ruleset of a proc worker: what it may still read and write, and that it may not
use TCP or reach out of its domain with signals or abstract UNIX sockets.

The only module that imports `landlockpy` (ctypes bindings that know every ABI version's rights
and drop, in best-effort mode, what the running kernel lacks).

Every right the kernel knows is *handled* (denied by default); rules then give back:

- read (READ_FILE, READ_DIR) beneath each read path: the extension's directory and the Python
  runtime. No EXECUTE anywhere: nothing may be run (seccomp refuses execve as well).
- read and write beneath the scratch directory, when the extension was granted one: create,
  write, truncate, rename, remove regular files and directories. No devices, FIFOs, sockets or
  symlinks, which the extension never needs and which are tools of confusion attacks.

Landlock checks the file that is finally opened, so a symlink planted in the extension directory
that points elsewhere leads to a refusal, not to the target. ABI 4 adds TCP bind/connect (all
handled, none allowed: defence in depth behind seccomp's socket refusal, for a socket fd that
might still be inherited); ABI 6 adds scoping, so the worker cannot signal processes outside its
own Landlock domain (the host, other workers) nor connect to abstract UNIX sockets outside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kumix.extensions.proc import shared_libraries  # noqa: F401  (before the binding: no ldconfig runs)

# isort: split
import landlockpy as landlock

READ_ACCESS = landlock.AccessFS.READ_FILE | landlock.AccessFS.READ_DIR
WRITE_ACCESS = (
    READ_ACCESS
    | landlock.AccessFS.WRITE_FILE
    | landlock.AccessFS.TRUNCATE
    | landlock.AccessFS.MAKE_REG
    | landlock.AccessFS.MAKE_DIR
    | landlock.AccessFS.REMOVE_FILE
    | landlock.AccessFS.REMOVE_DIR
    | landlock.AccessFS.REFER
)
FILE_ONLY_ACCESS = (
    landlock.AccessFS.EXECUTE
    | landlock.AccessFS.READ_FILE
    | landlock.AccessFS.WRITE_FILE
    | landlock.AccessFS.TRUNCATE
    | landlock.AccessFS.IOCTL_DEV
)
"""Rights the kernel accepts in a rule on a single file (the others only make sense on dirs)."""

NET_ABI = 4
SCOPE_ABI = 6


@dataclass(frozen=True)
class LandlockStatus:
    abi: int
    filesystem: bool
    tcp: bool
    """TCP bind and connect are handled (and so refused)."""
    scoped: bool
    """Signals and abstract UNIX sockets are scoped to the worker's own domain."""


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or disabled at boot."""
    try:
        return landlock.abi_version()
    except OSError:
        return 0


class PreparedRuleset:
    """A ruleset whose rules are added but which is not enforced yet.

    Rules are added while the worker still runs as the host's user, because Landlock opens each
    path to add its rule and the unprivileged worker may not be allowed to reach it by path any
    more; enforcement comes later, with `enforce`."""

    def __init__(self, read_paths: Iterable[Path], write_paths: Iterable[Path]) -> None:
        self._ruleset = landlock.Ruleset(
            handled_net=landlock.AccessNet.BIND_TCP | landlock.AccessNet.CONNECT_TCP,
            scoped=landlock.Scope.ABSTRACT_UNIX_SOCKET | landlock.Scope.SIGNAL,
        )
        for path in read_paths:
            self._allow(path, READ_ACCESS)
        for path in write_paths:
            self._allow(path, WRITE_ACCESS)

    def _allow(self, path: Path, access: landlock.AccessFS) -> None:
        if not path.is_dir():
            access &= FILE_ONLY_ACCESS
        self._ruleset.allow_path(path, access)

    @property
    def status(self) -> LandlockStatus:
        rs = self._ruleset
        return LandlockStatus(
            abi=rs.abi_version,
            filesystem=bool(rs.handled_fs),
            tcp=bool(rs.handled_net & landlock.AccessNet.CONNECT_TCP),
            scoped=bool(rs.scoped & landlock.Scope.SIGNAL),
        )

    def enforce(self) -> LandlockStatus:
        """Irreversible for this process and everything it would start. no_new_privs must
        already be set (the worker sets it before); the binding would set it too."""
        try:
            # TSYNC (ABI 8) extends the domain to every thread of the process; older kernels
            # drop the flag (best effort) and the caller refuses to confine a threaded worker.
            self._ruleset.restrict(landlock.RestrictFlag.TSYNC)
        finally:
            self._ruleset.close()
        return self.status

    def close(self) -> None:
        self._ruleset.close()


def prepare(read_paths: Iterable[Path], write_paths: Iterable[Path]) -> PreparedRuleset:
    """Raises OSError when the kernel has no usable Landlock or a path cannot be opened."""
    return PreparedRuleset(list(read_paths), list(write_paths))
