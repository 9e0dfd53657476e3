"""The seccomp filters of a proc worker: which system calls it may still make, and how.

The only module that imports `pyseccomp` (a ctypes binding to libseccomp with the API of
libseccomp's own Python bindings). Syscalls are named, never numbered: libseccomp resolves the
names for the running architecture.

Design: an ALLOWLIST. Two filters are stacked, and the kernel runs both and keeps the most
restrictive verdict (for two errno verdicts, the one of the filter loaded last):

1. the argument filter (loaded first): default ALLOW, with the argument checks that keep
   allowed calls inside the worker (signals only to itself, clone only for threads, socketpair
   only AF_UNIX stream, no fd-owner signalling, no PDEATHSIG change, resource calls only on
   itself, no TIOCSTI);
2. the allowlist (loaded last): default ERRNO(ENOSYS) — a syscall not listed in `ALLOWED`,
   including every number this libseccomp or this module does not know (a newer kernel's
   `listmount`, `statmount`, …), answers "no such system call", which is also what C libraries
   expect before they fall back to an older call; the calls of `DENIED_GROUPS` answer EPERM
   (a refusal the tests can tell from an unknown call); xattr calls answer ENOTSUP (see
   `XATTR_SYSCALLS`).

A single filter cannot say "allow ioctl except these commands": libseccomp drops conditional
rules of a syscall that also has an unconditional one. Stacking keeps both rules exact.

`ALLOWED` was measured, not guessed: `strace -f` of the real workers running the bundled
extensions (markdown, mermaid, theme, the WASM demo), the WASM attack modules and the proc
host tests, keeping the calls made after the filter was loaded (scripts in docs/confinement.md),
plus what ordinary Python code in an extension does with its scratch directory (files,
directories, times, locks), each with its reason below.

Per-call cost: the kernel (5.11+) caches, per filter, the syscalls whose verdict is ALLOW no
matter the arguments, and answers them without running any BPF program when every stacked
filter allows them constantly. Every syscall of a request round trip (`HOT_SYSCALLS`) therefore
has no argument rule in either filter (tests/test_confinement_seccomp_shape.py walks both
exported programs like the kernel does). Measured (bench/confinement_layers.py): a filter adds
~10 ns to a cached syscall and ~40 ns to one with an argument rule, and nothing measurable to a
pipe round trip; loading it changes no speculation control on a kernel whose SSB/IBPB/STIBP
mitigations are off (see docs/confinement.md), so SECCOMP_FILTER_FLAG_SPEC_ALLOW (libseccomp
CTL_SSB) is not set.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import tempfile
import termios
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kumix.extensions.proc import shared_libraries  # noqa: F401  (before the binding: no ldconfig runs)

# isort: split
import pyseccomp as seccomp

from kumix.extensions.proc.privileges import PR_SET_PDEATHSIG
from kumix.extensions.proc.privileges import no_new_privs as privileges_no_new_privs

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

ALLOWED: dict[str, tuple[tuple[str, ...], str]] = {
    "round_trip": (HOT_SYSCALLS, "the request loop, allocation, the GIL, an async handler's event loop (measured)"),
    "memory": (
        ("mlock", "munlock", "msync", "mincore", "membarrier"),
        "wasmtime maps, protects and publishes JIT code and linear memory; msync for mmap'd scratch files",
    ),
    "threads": (
        ("clone", "set_robust_list", "rseq", "exit", "exit_group", "sched_getaffinity",
         "get_robust_list", "set_tid_address", "arch_prctl", "futex_waitv"),
        "threads of CPython, asyncio's executor and wasmtime (clone only with CLONE_THREAD, by the "
        "argument filter; clone3 is left out: its ENOSYS makes glibc fall back to clone; measured)",
    ),
    "signals": (
        ("rt_sigaction", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait", "sigaltstack", "restart_syscall",
         "kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "setitimer", "getitimer", "alarm"),
        "CPython's signal module and wasmtime's trap handlers (sigaltstack, measured); signals only to "
        "the worker itself (argument filter)",
    ),
    "time": (
        ("clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time", "times"),
        "time.sleep, time.monotonic, wasmtime's epoch thread (clock_nanosleep, measured)",
    ),
    "descriptors": (
        ("pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "dup", "dup2", "dup3",
         "fcntl", "ioctl", "pipe", "pipe2", "eventfd2", "epoll_create", "epoll_create1", "epoll_ctl",
         "epoll_pwait2", "close_range", "fsync", "fdatasync", "ftruncate", "fallocate", "flock",
         "copy_file_range", "sendfile", "fstatfs", "fchmod", "fchdir"),
        "file objects, asyncio's loop and self-pipe, shutil's copies in the scratch directory "
        "(ioctl and fcntl without the fd-owner and terminal commands: argument filter; measured: "
        "ioctl TCGETS/FIONBIO, fcntl, pipe2, eventfd2, epoll_*)",
    ),
    "socketpair_ends": (
        ("socketpair", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "getsockname",
         "getpeername", "getsockopt", "setsockopt"),
        "asyncio's self-pipe is a socketpair(AF_UNIX, SOCK_STREAM) (argument filter); these act only "
        "on ends the worker holds — it can make no other socket (measured: socketpair, getsockname)",
    ),
    "paths": (
        ("open", "openat", "openat2", "stat", "lstat", "statx", "access", "faccessat", "faccessat2",
         "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "mkdir", "mkdirat",
         "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "truncate", "utimensat",
         "utimes", "utime", "futimesat", "chmod", "fchmodat", "fchmodat2", "statfs", "umask"),
        "imports and the extension's own files; every path resolves inside the worker's mount "
        "namespace view and Landlock decides what may be opened or changed (measured: openat, "
        "newfstatat, readlink, getdents64, utimensat)",
    ),
    "identity": (
        ("getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid", "getresgid",
         "getpgrp", "getpgid", "getsid", "uname", "getrlimit", "prlimit64", "getrusage", "sysinfo",
         "getpriority", "setpriority", "getcpu", "getrandom", "prctl", "capget", "sched_getparam",
         "sched_getscheduler", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
         "sched_getattr", "sched_get_priority_max", "sched_get_priority_min"),
        "os and resource module queries about the worker itself, random numbers, os.nice, pinning "
        "itself (prlimit64, setpriority, sched_set*, prctl: only on itself or by argument, argument "
        "filter; measured: geteuid, getrandom, uname)"),
}
"""What a confined worker may call, by purpose, with the reason. Anything else is refused."""

XATTR_SYSCALLS: tuple[str, ...] = (
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "getxattrat", "setxattrat", "listxattrat", "removexattrat",
)
"""Extended attributes are refused (Landlock governs none of them, and `user.*` names and
values are data of their own). The answer is ENOTSUP, "this filesystem has no xattrs", which
shutil.copy2/copytree already treat as nothing to copy: extension code keeps working."""

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
        "pidfd_open",
        "pidfd_send_signal",
        "tkill",
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
    # SysV IPC is a machine-wide world keyed by numbers that neither Landlock nor file permissions
    # govern (the worker's own IPC namespace is empty besides; this holds without it too).
    "sysv_ipc": (
        "ipc", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop", "semctl",
        "shmget", "shmat", "shmdt", "shmctl",
    ),
    # Watching files is a read Landlock does not govern: the names of files created in a
    # directory the worker may not list would reach it as events.
    "file_watching": (
        "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_init", "fanotify_mark",
    ),
    # Ownership, links and device nodes: an extension needs none of them, and Landlock (which
    # grants no MAKE_SYM/MAKE_CHAR/MAKE_BLOCK) refuses most already.
    "ownership_links": (
        "chown", "fchown", "lchown", "fchownat", "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat",
    ),
    # Identity changes: a confined worker holds no capability, so these could only fail or be
    # no-ops; refusing them says so plainly (and keeps a worker from a setuid-to-self that would
    # clear its parent-death signal).
    "identity_changes": (
        "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
        "setfsuid", "setfsgid", "capset",
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
"""(syscall, index of its pid argument). The workers of one extension share a uid on a root
host, and every worker of a non-root host has the user's uid, so the kernel's same-uid rule would
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
only checks that the owner's uid matches the caller's: the workers of one extension share a uid
and a non-root host's workers share the user's uid, so without Landlock's signal scope (ABI 6)
a worker could kill a sibling worker, or a non-root host, with a pipe it writes to itself.
An extension has no use for SIGIO, so these commands are refused whatever their target."""


@dataclass(frozen=True)
class SeccompResult:
    denied: tuple[str, ...]
    """Syscall names refused outright or by argument."""
    unknown: tuple[str, ...] = ()
    """Names this libseccomp cannot resolve (newer than its tables): refused by the allowlist's
    default like every other unlisted number."""
    absent: tuple[str, ...] = field(default=())
    """Names that do not exist on this architecture (nothing to filter)."""
    allowed: tuple[str, ...] = field(default=())
    """Syscall names the allowlist lets through (some still checked by argument)."""


def _signal_only_self(add: Callable[..., None], deny: int, own_pid: int) -> None:
    """Signals may only target the worker itself, by its pid. Landlock's signal scope (ABI 6)
    and the uid switch (root hosts) stop signals to the host too; this rule also holds on older
    kernels for a non-root host, whose worker shares the user's uid and could otherwise
    kill(-1, SIGKILL) every process of the user. (libseccomp cannot AND two tests of one
    argument, so kill(0, …) — the worker's own, single-member process group — is refused too.)
    The full 64-bit register is compared: the kernel reads the low 32 bits, so no value can
    pass the test and still name another process. (pidfd_open and tkill, which the previous
    denylist checked here, are refused outright by the allowlist.)"""
    ne = seccomp.NE
    add("kill", deny, seccomp.Arg(0, ne, own_pid))
    add("tgkill", deny, seccomp.Arg(0, ne, own_pid))
    add("rt_sigqueueinfo", deny, seccomp.Arg(0, ne, own_pid))
    add("rt_tgsigqueueinfo", deny, seccomp.Arg(0, ne, own_pid))


def _resolve(name: str) -> int:
    nr: int = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    return nr


_NR_SCMP_ERROR = -1
"""libseccomp's answer for a name it does not know at all; other negative answers are
pseudo-numbers for syscalls that exist on some architecture but not this one."""


def _unconditional_names() -> Iterable[str]:
    for names in DENIED_GROUPS.values():
        yield from names


def allowed_names() -> tuple[str, ...]:
    names: list[str] = []
    for group, _reason in ALLOWED.values():
        names += group
    return tuple(dict.fromkeys(names))


class _Rules:
    """Adds rules to one filter by name, remembering which names this libseccomp does not know
    (newer than its tables) and which do not exist on this architecture."""

    def __init__(self, flt: seccomp.SyscallFilter) -> None:
        self.flt = flt
        self.named: list[str] = []
        self.unknown: list[str] = []
        self.absent: list[str] = []

    def __call__(self, name: str, action: int, *args: seccomp.Arg) -> None:
        nr = _resolve(name)
        if nr == _NR_SCMP_ERROR:
            self.unknown.append(name)
            return
        if nr < 0:
            self.absent.append(name)
            return
        self.flt.add_rule(action, nr, *args)
        self.named.append(name)


def _new_filter(default: int) -> seccomp.SyscallFilter:
    flt = seccomp.SyscallFilter(default)
    # A syscall made through a foreign ABI (32-bit int 0x80 on x86_64) would bypass rules
    # written for the native numbers; refuse the whole foreign ABI the same way.
    flt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.ERRNO(errno.EPERM))
    # Apply to every thread of the process, not only the calling one.
    flt.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    return flt


def build_argument_filter(own_pid: int | None = None) -> tuple[seccomp.SyscallFilter, _Rules]:
    """Filter 1 (loaded first): default ALLOW, refusing allowed calls by their arguments.

    With `own_pid`, signals may only go to that process (see `_signal_only_self`)."""
    deny = seccomp.ERRNO(errno.EPERM)
    add = _Rules(_new_filter(seccomp.ALLOW))
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
    return add.flt, add


def build_allowlist_filter() -> tuple[seccomp.SyscallFilter, _Rules]:
    """Filter 2 (loaded last): default ENOSYS; ALLOWED allowed, DENIED_GROUPS EPERM, xattrs ENOTSUP."""
    add = _Rules(_new_filter(seccomp.ERRNO(errno.ENOSYS)))
    for name in allowed_names():
        add(name, seccomp.ALLOW)
    for name in _unconditional_names():
        add(name, seccomp.ERRNO(errno.EPERM))
    for name in XATTR_SYSCALLS:
        add(name, seccomp.ERRNO(errno.ENOTSUP))
    return add.flt, add


def build_filters(own_pid: int | None = None) -> tuple[tuple[seccomp.SyscallFilter, ...], SeccompResult]:
    """Both filters in load order, not yet loaded (tests and the benchmark export them)."""
    args_flt, args_rules = build_argument_filter(own_pid)
    allow_flt, allow_rules = build_allowlist_filter()
    allowed = set(allowed_names())
    denied = [n for n in allow_rules.named if n not in allowed] + args_rules.named
    result = SeccompResult(
        denied=tuple(dict.fromkeys(denied)),
        unknown=tuple(dict.fromkeys(args_rules.unknown + allow_rules.unknown)),
        absent=tuple(dict.fromkeys(args_rules.absent + allow_rules.absent)),
        allowed=tuple(n for n in allow_rules.named if n in allowed),
    )
    return (args_flt, allow_flt), result


_PRECOMPILED: tuple[bytes, SeccompResult] | None = None
"""The allowlist filter as BPF, with its names: it depends on nothing per worker, so the fork
server compiles it once (`precompile`, ~2 ms) and every worker loads the bytes (µs)."""

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
_BPF_INSTRUCTION_BYTES = 8


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)


def precompile() -> tuple[bytes, SeccompResult]:
    """The allowlist filter's BPF program and what it names (compiled on first use)."""
    global _PRECOMPILED
    if _PRECOMPILED is None:
        flt, rules = build_allowlist_filter()
        with tempfile.TemporaryFile(mode="w+b") as out:
            flt.export_bpf(out)
            out.seek(0)
            program = out.read()
        allowed = set(allowed_names())
        _PRECOMPILED = program, SeccompResult(
            denied=tuple(n for n in rules.named if n not in allowed),
            unknown=tuple(rules.unknown),
            absent=tuple(rules.absent),
            allowed=tuple(n for n in rules.named if n in allowed),
        )
    return _PRECOMPILED


def _load_program(program: bytes) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, TSYNC, prog): what libseccomp's load does with the same
    bytes (no_new_privs must be set; the worker sets it before)."""
    if not privileges_no_new_privs():
        raise OSError(errno.EPERM, "no_new_privs must be set before loading a seccomp program")
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // _BPF_INSTRUCTION_BYTES, ctypes.addressof(buffer))
    nr = _resolve("seccomp")
    result = _libc.syscall(ctypes.c_long(nr), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                           ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(prog))
    if result != 0:
        code = ctypes.get_errno() if result < 0 else errno.ESRCH  # TSYNC: a thread id that could not sync
        raise OSError(code, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(code)}")


def install() -> SeccompResult:
    """Load both filters into the calling process (needs no_new_privs or CAP_SYS_ADMIN).

    libseccomp sets no_new_privs itself when loading the argument filter (its CTL_NNP
    default), so no filter is ever installed without it. The argument filter goes first, the
    allowlist (precompiled) last, so its errno wins when both refuse."""
    args_flt, args_rules = build_argument_filter(os.getpid())
    program, allow_result = precompile()
    args_flt.load()
    _load_program(program)
    return SeccompResult(
        denied=tuple(dict.fromkeys([*allow_result.denied, *args_rules.named])),
        unknown=tuple(dict.fromkeys([*args_rules.unknown, *allow_result.unknown])),
        absent=tuple(dict.fromkeys([*args_rules.absent, *allow_result.absent])),
        allowed=allow_result.allowed,
    )


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


def export_bpf() -> tuple[bytes, ...]:
    """The filters as the kernel receives them, in load order: arrays of classic BPF
    `sock_filter` records."""
    filters, _ = build_filters(os.getpid())
    programs = []
    for flt in filters:
        with tempfile.TemporaryFile(mode="w+b") as out:
            flt.export_bpf(out)
            out.seek(0)
            programs.append(out.read())
    return tuple(programs)


def export_rules() -> str:
    """The filters in libseccomp's human-readable pseudo-filter-code form, for docs and tests."""
    filters, _ = build_filters()
    texts = []
    for flt in filters:
        with tempfile.TemporaryFile(mode="w+") as out:
            flt.export_pfc(out)
            out.seek(0)
            texts.append(out.read())
    return "\n".join(texts)
