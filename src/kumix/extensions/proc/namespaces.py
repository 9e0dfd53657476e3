"""A world of its own for each proc worker: user, mount, IPC, network and PID namespaces.

Landlock governs opening files; it does not govern `stat`, `readlink`, `getxattr`, inotify or
the mount table, so a worker confined by access rules alone still learns names, metadata and
extended attributes anywhere its uid may look. A mount namespace whose root is a fresh,
read-only tmpfs that holds only bind mounts of the Python runtime and of the extension
directory (read-only) and of the scratch directory (writable) removes everything else from the
worker's view: a path outside those does not exist for it (ENOENT), whatever the call.

- IPC namespace: SysV message queues, semaphores and shared memory are a machine-wide world
  keyed by numbers; a worker's own IPC namespace is empty and vanishes with it, so it can neither
  reach another program's objects nor leave one of its own behind.
- Network namespace: only a loopback interface that is down. Seccomp already refuses sockets;
  this removes the network even for a descriptor that might be inherited.
- User namespace: the only way an unprivileged host may create the others. It maps the worker's
  uid and gid to themselves (one id each, `setgroups` denied), so files keep their owners and
  the worker gains nothing outside. Each worker has its own, so its capabilities inside (dropped
  right after the view is built) reach nothing of a sibling, and `RLIMIT_NPROC` — counted per
  user namespace since Linux 5.14 — counts exactly the worker's own tasks.
- PID namespace: only the worker's own pid exists for it (it is pid 1), so `kill`, `pidfd_open`,
  `getppid` and any /proc name no other process. `unshare(CLONE_NEWPID)` moves only the
  caller's future children, so the caller enters it first (`enter_pid_namespace`, with the user
  namespace on a non-root host) and forks at once (pid_namespace.py): the child becomes the
  worker and enters the other namespaces, the parent stays behind as its supervisor.

The view is built from `/proc/self/fd/N` of O_PATH descriptors opened before the tmpfs covers
its mount point, so the sources need not be reachable afterwards. Every directory keeps its own
path inside the view, so `sys.path` and the extension's paths stay valid unchanged; the
directories around them are tmpfs directories (0755), so the permissions of their real
ancestors (a runtime under a 0700 /root) no longer matter.

Everything here runs in the forked worker, single-threaded (unshare(CLONE_NEWUSER) refuses a
threaded caller), before Landlock and seccomp.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x0002_0000
CLONE_NEWIPC = 0x0800_0000
CLONE_NEWUSER = 0x1000_0000
CLONE_NEWPID = 0x2000_0000
CLONE_NEWNET = 0x4000_0000
"""From linux/sched.h (Python 3.11's os module has no CLONE_* names)."""

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x4_0000
MS_RELATIME = 0x20_0000
MS_STRICTATIME = 0x100_0000
MNT_DETACH = 0x2
"""From linux/mount.h."""

ST_RELATIME = 0x1000
"""statvfs's f_flag bit for relatime (the other ST_* bits equal their MS_* counterparts)."""

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41}
"""pivot_root has no libc wrapper; its syscall number per architecture."""

MOUNT_POINT = Path("/tmp")  # noqa: S108 - covered by a private tmpfs inside the worker's own mount namespace
"""Where the new root is assembled before pivot_root. Only covered inside the worker's own mount
namespace; every source is opened before it is covered, so sources under /tmp still work."""

ROOT_TMPFS_OPTIONS = "mode=0755,size=1m,nr_inodes=4096"
"""The root holds only mount points; 1 MiB and 4096 inodes bound what it could ever hold (it is
remounted read-only anyway)."""

_libc = ctypes.CDLL(None, use_errno=True)


class NamespaceError(OSError):
    """A step of entering the namespaces failed; the message names the step."""


def _check(result: int, step: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise NamespaceError(code, f"{step}: {os.strerror(code)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None, step: str) -> None:
    _check(
        _libc.mount(
            source.encode() if source is not None else None,
            target.encode(),
            fstype.encode() if fstype is not None else None,
            ctypes.c_ulong(flags),
            data.encode() if data is not None else None,
        ),
        step,
    )


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Exposure:
    """One path of the real filesystem that appears, at the same path, in the worker's view."""

    path: Path
    writable: bool = False


@dataclass(frozen=True)
class NamespaceStatus:
    user: bool
    mount: bool
    ipc: bool
    net: bool
    exposed: tuple[str, ...]


def unavailable_reason() -> str | None:
    """Why this machine cannot give workers their namespaces (None when it can), judged from the
    sysctls that switch unprivileged user namespaces off; the worker's attempt is the real test."""
    if os.uname().machine not in _SYS_PIVOT_ROOT:
        return f"pivot_root's syscall number is not known for {os.uname().machine}"
    for path, off in (
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/user/max_pid_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1"),
    ):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        # A root host needs them too: its worker enters a user namespace after the uid switch.
        if value == off:
            return f"{path} is {value}"
    return None


def _locked_flags(path: str) -> int:
    """The flags of the mount at `path` that a remount from a user namespace must keep."""
    f = os.statvfs(path).f_flag
    flags = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if f & ST_RELATIME:
        flags |= MS_RELATIME
    return flags


def _map_own_ids(uid: int, gid: int) -> None:
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")


def enter_pid_namespace(*, new_user_namespace: bool) -> None:
    """A PID namespace for the caller's next child (pid_namespace.become_pid_one), and on a
    non-root host the user namespace that permits it and the others (uid and gid mapped to
    themselves, `setgroups` denied). Done first and alone, so the process forks before it has
    written much memory: every page it writes before the fork, the worker copies once more."""
    uid, gid = os.geteuid(), os.getegid()
    # The kernel handles CLONE_NEWUSER first, so the PID namespace is owned by the new user
    # namespace, whose capabilities permit it on a non-root host.
    _check(_libc.unshare(ctypes.c_int(CLONE_NEWPID | (CLONE_NEWUSER if new_user_namespace else 0))),
           "unshare(CLONE_NEWPID)")
    if new_user_namespace:
        _map_own_ids(uid, gid)


def enter(exposures: Iterable[Exposure], *, new_user_namespace: bool) -> NamespaceStatus:
    """Enter new mount, IPC and network namespaces (and a user namespace when asked — on a
    non-root host that did not enter one with its PID namespace, where it is what permits the
    others) and pivot into a root that holds only `exposures`. Raises NamespaceError (an
    OSError) naming the failed step."""
    wanted = list(dict.fromkeys(exposures))
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | (CLONE_NEWUSER if new_user_namespace else 0)
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if new_user_namespace:
        _map_own_ids(uid, gid)
    # Nothing mounted from here on may propagate back to the host's mount namespace.
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "make / private")
    base = str(MOUNT_POINT)
    sources: list[tuple[int, Exposure, bool]] = []
    try:
        for exposure in wanted:
            fd = os.open(exposure.path, os.O_PATH | os.O_CLOEXEC)
            sources.append((fd, exposure, stat.S_ISDIR(os.fstat(fd).st_mode)))
        _mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, ROOT_TMPFS_OPTIONS, "mount the new root")
        for fd, exposure, is_dir in sources:
            target = base + str(exposure.path)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if is_dir:
                os.makedirs(target, mode=0o755, exist_ok=True)
            elif not os.path.exists(target):
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC, None, f"bind {exposure.path}")
            if not exposure.writable:
                _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(target), None,
                       f"make {exposure.path} read-only")
    finally:
        for fd, _exposure, _is_dir in sources:
            os.close(fd)
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only
    # the new root (the documented way that needs no directory for the old root).
    os.chdir(base)
    _check(_libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT[os.uname().machine]), b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", ctypes.c_int(MNT_DETACH)), "detach the old root")
    os.chdir("/")
    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None,
           "make the new root read-only")
    return NamespaceStatus(
        user=new_user_namespace, mount=True, ipc=True, net=True, exposed=tuple(str(e.path) for e in wanted)
    )


def open_own_proc_dir() -> int:
    """A descriptor of this process's /proc directory, opened while /proc is still in view: the
    user namespace a root host's worker enters after the pivot (`enter_user_namespace`) has its
    id maps written through it. "self" is resolved in the PID namespace of that /proc (the
    host's), so it names this task even as pid 1 of a namespace of its own (`getpid()` would
    say 1 there); the dentry names this task, not whoever opens "self" later."""
    return os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _write_at(dir_fd: int, name: str, text: str) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


PR_SET_DUMPABLE = 4


def enter_user_namespace(proc_dir_fd: int) -> None:
    """A user namespace of the worker's own, entered after a root host switched it to its
    extension's uid (unprivileged by then): `RLIMIT_NPROC` then counts this worker's tasks only,
    and the capabilities it holds inside (dropped right after) reach nothing outside.

    The uid switch made the process non-dumpable, which makes its /proc files root's; it is made
    dumpable for the few writes of the id maps and non-dumpable again right after."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(PR_SET_DUMPABLE, 1)")
    try:
        _check(_libc.unshare(ctypes.c_int(CLONE_NEWUSER)), "unshare(CLONE_NEWUSER)")
        _write_at(proc_dir_fd, "setgroups", "deny")
        _write_at(proc_dir_fd, "uid_map", f"{uid} {uid} 1\n")
        _write_at(proc_dir_fd, "gid_map", f"{gid} {gid} 1\n")
    finally:
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE, 0)")
