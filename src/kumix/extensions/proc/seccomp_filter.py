"""The seccomp filter of a proc worker: which system calls it may no longer make.

The only module that imports `pyseccomp` (a ctypes binding to libseccomp with the API of
libseccomp's own Python bindings). Syscalls are named, never numbered: libseccomp resolves the
names for the running architecture.

Design: a denylist on top of a default of ALLOW. CPython, its extension modules and wasmtime
use a wide and changing set of ordinary syscalls (memory, files, futexes, signals, threads), and
an allowlist that misses one breaks an extension in ways that are hard to diagnose; the calls
that let a process leave its box are few and well known, so those are refused. Refusals return
EPERM (ENOSYS for clone3, see below) instead of killing the worker, so extension code sees an
ordinary `OSError` it can handle, and the host gets a reply instead of a crash.

What is refused and why is listed next to each group below and summarised in docs/confinement.md.

Per-call cost: the kernel (5.11+) caches, per filter, the syscalls whose verdict is ALLOW no
matter the arguments, and answers them without running the BPF program. Every syscall of a
request round trip (`HOT_SYSCALLS`) therefore must have no rule at all here, not even an
argument check: a rule on one of them would make the filter run on every call
(tests/test_confinement_seccomp_shape.py walks the exported BPF like the kernel does).
Measured (bench/confinement_layers.py): the filter adds ~10 ns to a cached syscall and ~40 ns
to one with an argument rule, and nothing measurable to a pipe round trip; loading it changes
no speculation control on a kernel whose SSB/IBPB/STIBP mitigations are off (see
docs/confinement.md), so SECCOMP_FILTER_FLAG_SPEC_ALLOW (libseccomp CTL_SSB) is not set.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
import termios
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyseccomp as seccomp

from kumix.extensions.proc.privileges import PR_SET_PDEATHSIG

CLONE_THREAD = 0x00010000
"""From linux/sched.h (Python 3.11's os module has no CLONE_* names). clone() with this flag
makes a thread of the same process, which CPython, wasmtime and libc need; without it clone()
makes a new process, which is what fork(), vfork(), posix_spawn() and subprocess use."""

HOT_SYSCALLS: tuple[str, ...] = (
    "read",
    "write",
    "readv",
    "writev",
    "futex",
    "epoll_wait",
    "epoll_pwait",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "madvise",
    "mprotect",
    "close",
    "lseek",
    "fstat",
    "newfstatat",
    "getpid",
    "gettid",
    "clock_gettime",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
)
"""Syscalls of a request round trip and of ordinary Python work (the worker's blocking read
loop, allocation, the GIL's futex, an async handler's event loop): none may carry a rule, so
the kernel's seccomp action cache answers them as ALLOW without running the filter."""

_LOW_32_BITS = 0xFFFF_FFFF
"""ioctl and prctl take an `unsigned int`/`int` command but seccomp sees 64-bit registers:
compare only the low half, or garbage in the upper half slips a command past an EQ test."""

DENIED_GROUPS: dict[str, tuple[str, ...]] = {
    # Network: a worker talks to its host only over the pipes it was given. It never owns a
    # socket but a socketpair's connected stream ends, so naming, accepting and connecting
    # are refused too: bind() on a socketpair end would claim a name in the machine-wide
    # abstract UNIX namespace, which Landlock's abstract scope (connect only) does not cover.
    "network": ("socket", "socketcall", "bind", "listen", "connect", "accept", "accept4"),
    # New processes and programs: no fork, no exec, no way to run `sh`.
    "processes": ("fork", "vfork", "execve", "execveat"),
    # Reading or steering other processes (their memory, their fds, their identity).
    "other_processes": (
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "process_madvise",
        "pidfd_getfd",
        "kcmp",
        "move_pages",
        "migrate_pages",
    ),
    # Mounts and namespaces: the ways out of a filesystem view or into a new user namespace
    # (where the worker would be root again and could build a fresh, empty Landlock world).
    "mounts_namespaces": (
        "mount",
        "umount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "move_mount",
        "open_tree",
        "mount_setattr",
    ),
    # Kernel attack surface that an extension never needs and that has a history of
    # privilege-escalation bugs reachable from unprivileged code.
    "kernel_surface": (
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "modify_ldt",
        "uselib",
        "personality",
        "lookup_dcookie",
    ),
    # File handles bypass path-based checks (the classic container escape via open_by_handle_at).
    "file_handles": ("open_by_handle_at", "name_to_handle_at"),
    # Whole-machine administration.
    "administration": (
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "kexec_file_load",
        "reboot",
        "swapon",
        "swapoff",
        "acct",
        "quotactl",
        "quotactl_fd",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "syslog",
        "vhangup",
        "iopl",
        "ioperm",
        "sethostname",
        "setdomainname",
        "nfsservctl",
    ),
    # Leaving the process group the host kills on shutdown.
    "process_group": ("setsid", "setpgid"),
    # I/O priority can name a whole user (IOPRIO_WHO_USER) or another process; an extension
    # has no use for it.
    "scheduling": ("ioprio_set",),
}

SOCK_STREAM_TYPE = socket.SOCK_STREAM
_SOCK_TYPE_MASK = 0xF
"""linux/net.h SOCK_TYPE_MASK: the low bits of socketpair's `type` are the socket type; the
rest are SOCK_NONBLOCK/SOCK_CLOEXEC, which stay allowed."""

_TARGETS_A_PROCESS: tuple[tuple[str, int], ...] = (
    ("prlimit64", 0),
    ("sched_setaffinity", 0),
    ("sched_setscheduler", 0),
    ("sched_setparam", 0),
    ("sched_setattr", 0),
    ("get_robust_list", 0),
)
"""(syscall, index of its pid argument). All workers of a root host share one unprivileged
uid, and a non-root host's workers share the user's uid, so the kernel's same-uid rule would
let one worker lower a sibling's (or the host's) rlimits, pin or starve it, or read its robust
futex list. Each is allowed only with pid 0, i.e. the caller itself, which is what glibc's
setrlimit/getrlimit and Python's resource module pass."""


F_SETOWN_EX = 15
"""From linux/fcntl.h (Python's fcntl module does not name it)."""
FIOSETOWN = 0x8901
SIOCSPGRP = 0x8902
"""From asm-generic/sockios.h and linux/sockios.h: the socket ioctls that set an fd's owner."""

SIGNAL_OWNER_COMMANDS: tuple[tuple[str, int], ...] = (
    ("fcntl", fcntl.F_SETOWN),
    ("fcntl", F_SETOWN_EX),
    ("ioctl", FIOSETOWN),
    ("ioctl", SIOCSPGRP),
)
"""(syscall, command) pairs that name the process or process group the kernel signals when an
fd becomes ready (O_ASYNC). F_SETSIG then picks the signal, SIGKILL included, and the kernel
only checks that the owner's uid matches the caller's: every worker of a root host is uid 65534
and a non-root host's workers share the user's uid, so without Landlock's signal scope (ABI 6)
a worker could kill a sibling worker, or a non-root host, with a pipe it writes to itself.
An extension has no use for SIGIO, so these commands are refused whatever their target."""


@dataclass(frozen=True)
class SeccompResult:
    denied: tuple[str, ...]
    """Syscall names a rule was added for (conditional ones included)."""
    unknown: tuple[str, ...] = ()
    """Names this libseccomp cannot resolve (newer than its tables): not filtered."""
    absent: tuple[str, ...] = field(default=())
    """Names that do not exist on this architecture (nothing to filter)."""


def _signal_only_self(add: Callable[..., None], deny: int, own_pid: int) -> None:
    """Signals may only target the worker itself, by its pid. Landlock's signal scope (ABI 6)
    and the uid switch (root hosts) stop signals to the host too; this rule also holds on older
    kernels for a non-root host, whose worker shares the user's uid and could otherwise
    kill(-1, SIGKILL) every process of the user. (libseccomp cannot AND two tests of one
    argument, so kill(0, …) — the worker's own, single-member process group — is refused too.)
    The full 64-bit register is compared: the kernel reads the low 32 bits, so no value can
    pass the test and still name another process."""
    ne = seccomp.NE
    add("kill", deny, seccomp.Arg(0, ne, own_pid))
    add("tgkill", deny, seccomp.Arg(0, ne, own_pid))
    add("rt_sigqueueinfo", deny, seccomp.Arg(0, ne, own_pid))
    add("rt_tgsigqueueinfo", deny, seccomp.Arg(0, ne, own_pid))
    add("pidfd_open", deny, seccomp.Arg(0, ne, own_pid))
    # tkill names a thread id with no process; glibc no longer uses it.
    add("tkill", deny)


def _resolve(name: str) -> int:
    nr: int = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    return nr


_NR_SCMP_ERROR = -1
"""libseccomp's answer for a name it does not know at all; other negative answers are
pseudo-numbers for syscalls that exist on some architecture but not this one."""


def _unconditional_names() -> Iterable[str]:
    for names in DENIED_GROUPS.values():
        yield from names


def build_filter(own_pid: int | None = None) -> tuple[seccomp.SyscallFilter, SeccompResult]:
    """The filter, not yet loaded (tests and `kumix doctor` export it without loading it).

    With `own_pid`, signals may only go to that process (see `_signal_only_self`)."""
    deny = seccomp.ERRNO(errno.EPERM)
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    # A syscall made through a foreign ABI (32-bit int 0x80 on x86_64) would bypass rules
    # written for the native numbers; refuse the whole foreign ABI the same way.
    flt.set_attr(seccomp.Attr.ACT_BADARCH, deny)
    # Apply to every thread of the process, not only the calling one.
    flt.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    denied: list[str] = []
    unknown: list[str] = []
    absent: list[str] = []

    def add(name: str, action: int, *args: seccomp.Arg) -> None:
        nr = _resolve(name)
        if nr == _NR_SCMP_ERROR:
            unknown.append(name)
            return
        if nr < 0:
            absent.append(name)
            return
        flt.add_rule(action, nr, *args)
        denied.append(name)

    for name in _unconditional_names():
        add(name, deny)

    # clone() without CLONE_THREAD is fork in disguise; with it, a thread, which is allowed.
    add("clone", deny, seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
    # clone3 passes its flags in memory, which seccomp cannot read. ENOSYS makes glibc fall back
    # to clone(), whose flags the rule above can check (EPERM would be final: no fallback).
    add("clone3", seccomp.ERRNO(errno.ENOSYS))
    # socketpair(AF_UNIX, SOCK_STREAM) only makes two connected ends inside this process:
    # asyncio's event loop needs one for its self-pipe. Any other family is refused like
    # socket(), and so is any other type: an unconnected datagram end could sendto() any
    # pathname socket the worker can reach (syslog, journald), which Landlock before ABI 9
    # does not govern. (One rule per refused type value: libseccomp has no masked NE.)
    add("socketpair", deny, seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    for sock_type in range(_SOCK_TYPE_MASK + 1):
        if sock_type != SOCK_STREAM_TYPE:
            add("socketpair", deny, seccomp.Arg(1, seccomp.MASKED_EQ, _SOCK_TYPE_MASK, sock_type))
    # Resource and scheduling controls only on the caller itself (see _TARGETS_A_PROCESS).
    for name, pid_arg in _TARGETS_A_PROCESS:
        add(name, deny, seccomp.Arg(pid_arg, seccomp.NE, 0))
    # setpriority(which, who, prio) may name a process group or a whole user: only
    # PRIO_PROCESS (0) with who == 0, the caller itself.
    add("setpriority", deny, seccomp.Arg(0, seccomp.NE, 0))
    add("setpriority", deny, seccomp.Arg(1, seccomp.NE, 0))
    # TIOCSTI/TIOCLINUX push keystrokes into a terminal the worker might still share.
    for command in (termios.TIOCSTI, getattr(termios, "TIOCLINUX", None)):
        if command is not None:
            add("ioctl", deny, seccomp.Arg(1, seccomp.MASKED_EQ, _LOW_32_BITS, command))
    # Signals by fd ownership: a way around the kill() rules below (see SIGNAL_OWNER_COMMANDS).
    for name, command in SIGNAL_OWNER_COMMANDS:
        add(name, deny, seccomp.Arg(1, seccomp.MASKED_EQ, _LOW_32_BITS, command))
    # The host sets the parent-death signal so that a worker never outlives it; keep it set.
    add("prctl", deny, seccomp.Arg(0, seccomp.MASKED_EQ, _LOW_32_BITS, PR_SET_PDEATHSIG))
    if own_pid is not None:
        _signal_only_self(add, deny, own_pid)

    return flt, SeccompResult(tuple(dict.fromkeys(denied)), tuple(unknown), tuple(absent))


def install() -> SeccompResult:
    """Load the filter into the calling process (needs no_new_privs or CAP_SYS_ADMIN).

    libseccomp sets no_new_privs itself when loading (its CTL_NNP default), so the filter can
    never be installed without it."""
    flt, result = build_filter(os.getpid())
    flt.load()
    return result


def api_level() -> int:
    """libseccomp's view of the kernel's seccomp features (0 means none detected)."""
    try:
        level: int = seccomp.get_api()
    except NotImplementedError:
        return 0
    return level


def native_arch() -> int:
    """The AUDIT_ARCH_* token of this machine, as the filter compares `seccomp_data.arch`."""
    arch: int = seccomp.system_arch()
    return arch


def export_bpf() -> bytes:
    """The filter as the kernel receives it: an array of classic BPF `sock_filter` records."""
    flt, _ = build_filter(os.getpid())
    with tempfile.TemporaryFile(mode="w+b") as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def export_rules() -> str:
    """The filter in libseccomp's human-readable pseudo-filter-code form, for docs and tests."""
    flt, _ = build_filter()
    with tempfile.TemporaryFile(mode="w+") as out:
        flt.export_pfc(out)
        out.seek(0)
        return out.read()
