"""Process privileges of a proc worker: no_new_privs, capabilities, and the switch away from root.

The only module that imports `pyprctl` (a ctypes binding to prctl(2) and capget/capset). It is
used by `confinement` in the forked worker before any extension code runs.

Why each step exists:

- no_new_privs: after it, nothing the worker does can gain privileges (no setuid binary, no
  file capability); the kernel also requires it (or CAP_SYS_ADMIN) before an unprivileged
  process may install a seccomp filter or a Landlock domain.
- Dropping the capability bounding set while still root: once the uid changes the kernel
  clears the permitted and effective sets, but the bounding set would stay full, and CAP_SETPCAP
  (needed to shrink it) is gone by then.
- setgroups([]) before setresgid/setresuid: root's supplementary groups would otherwise follow
  the worker into the unprivileged uid.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

from kumix.extensions.proc import shared_libraries  # noqa: F401  (before the binding: no ldconfig runs)

# isort: split
import pyprctl
from pyprctl import ffi as _prctl_ffi

PR_SET_PDEATHSIG: int = _prctl_ffi.PR_SET_PDEATHSIG
"""prctl option that changes the parent-death signal; the seccomp filter refuses it so a worker
cannot opt out of dying with its host."""

NOBODY_ID = 65534
"""The kernel's overflow uid/gid, conventionally `nobody`/`nogroup`: an identity that owns no
files, so the worker reaches nothing through ordinary file permissions. Taken as a number so the
switch needs no NSS lookup (which could read /etc or talk to a directory service)."""

EXTENSION_ID_BASE = 0x5B00_0000
EXTENSION_ID_SPAN = 1 << 24
"""Root hosts give each extension a uid/gid of its own, `EXTENSION_ID_BASE + crc32(id) % SPAN`
(1,526,726,656 … 1,543,503,871): above the ranges distributions hand out to people and system
services (< 65536) and to systemd's dynamic users (61184-65519) and below systemd-nspawn's
container ranges (from 0x80000 · 0x10000). No file outside the extension's own scratch
directory is owned by such an id, so workers of different extensions cannot touch each other's
files, processes or IPC objects through ordinary permissions. Two extension ids share a uid only
on a crc32 collision in 2^24 values (kumix doctor and `ext info` could show it; see
docs/confinement.md)."""

STATUS_CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]


def extension_identity(extension_id: str) -> int:
    """The uid (and gid) a root host's workers of `extension_id` run as (see EXTENSION_ID_BASE)."""
    return EXTENSION_ID_BASE + zlib.crc32(extension_id.encode()) % EXTENSION_ID_SPAN


def current_identity() -> Identity:
    return Identity(os.geteuid(), os.getegid(), tuple(os.getgroups()))


def running_as_root() -> bool:
    return os.geteuid() == 0


def set_no_new_privs() -> None:
    pyprctl.set_no_new_privs()


def no_new_privs() -> bool:
    return bool(pyprctl.get_no_new_privs())


def _drop_bounding_set() -> None:
    for cap in pyprctl.Cap:
        if pyprctl.capbset_read(cap):
            pyprctl.capbset_drop(cap)


def _clear_capability_sets() -> None:
    pyprctl.cap_ambient_clear_all()
    pyprctl.CapState(effective=set(), permitted=set(), inheritable=set()).set_current()


def switch_to_unprivileged(uid: int, gid: int) -> Identity:
    """Root only: drop every capability for good and become uid/gid with no supplementary groups.

    Order matters: the bounding set is dropped first (needs CAP_SETPCAP), then groups, gid and
    finally uid (after setresuid the process could no longer change its gid). All three ids of
    each kind are set, so the saved set-user-ID cannot be used to become root again.
    """
    if uid == 0 or gid == 0:
        raise ValueError("the worker identity must not be root")
    pyprctl.set_keepcaps(False)
    _drop_bounding_set()
    pyprctl.cap_ambient_clear_all()
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    # The uid change cleared permitted and effective; clear inheritable too, which it keeps.
    _clear_capability_sets()
    return current_identity()


def drop_capabilities() -> None:
    """Non-root hosts: a process may always give up the capabilities it holds (for example a
    host started with file capabilities); the bounding set can only shrink with CAP_SETPCAP."""
    if pyprctl.cap_effective.setpcap:
        _drop_bounding_set()
    _clear_capability_sets()


def capability_masks(status_text: str) -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb from the text of /proc/<pid>/status, as integers.

    Read from the kernel's own report rather than from pyprctl's enum, so a capability newer than
    the binding still shows up as a non-zero bit."""
    masks: dict[str, int] = {}
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key in STATUS_CAP_FIELDS:
            masks[key] = int(value.strip(), 16)
    return masks
