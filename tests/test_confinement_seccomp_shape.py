"""The shape of the worker's seccomp filters: an allowlist, and what keeps its per-call cost at zero.

The worker loads two filters (seccomp_filter: an argument filter, then the allowlist); the
kernel runs every stacked filter and keeps the most restrictive verdict, the filter loaded last
winning between equal actions. The kernel (5.11+) walks each new filter once for every syscall
number and caches those whose verdict is ALLOW whatever the arguments, in this filter and every
earlier one; a cached syscall never runs a BPF program. A rule on a syscall — even an argument
check that allows most calls — takes it out of the cache. These tests walk the exported BPF
programs exactly as the kernel's `seccomp_is_const_allow()` does (kernel/seccomp.c) and check
that every syscall of a request round trip stays cached, that refusals keep their constant
errno, that the argument-checked rules stay argument-checked, and that every syscall number
the allowlist does not name — the ones no libseccomp knows yet included — is refused.
Timing is measured by bench/confinement_layers.py, never asserted here.
"""

from __future__ import annotations

import errno
import struct
import sys

import pytest

from kumix.extensions.proc import seccomp_filter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

SECCOMP_RET_ALLOW = 0x7FFF_0000
SECCOMP_RET_ERRNO = 0x0005_0000
_LD_W_ABS, _RET_K, _JA = 0x20, 0x06, 0x05
_JEQ, _JGT, _JGE, _JSET, _ALU_AND_K = 0x15, 0x25, 0x35, 0x45, 0x54
_OFFSET_NR, _OFFSET_ARCH = 0, 4


def constant_verdict(program: bytes, nr: int, arch: int) -> int | None:
    """The filter's verdict for syscall `nr` when it does not depend on the arguments (the
    kernel would cache it), or None when the program reads anything but nr and arch on the way
    (an argument, the instruction pointer) or uses an instruction the kernel's walk refuses."""
    insns = list(struct.iter_unpack("=HBBI", program))
    reg, pc = 0, 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        if code == _LD_W_ABS:
            if k == _OFFSET_NR:
                reg = nr
            elif k == _OFFSET_ARCH:
                reg = arch
            else:
                return None
        elif code == _RET_K:
            return k
        elif code == _JA:
            pc += k
        elif code in (_JEQ, _JGT, _JGE, _JSET):
            taken = {
                _JEQ: reg == k,
                _JGT: reg > k,
                _JGE: reg >= k,
                _JSET: bool(reg & k),
            }[code]
            pc += jt if taken else jf
        elif code == _ALU_AND_K:
            reg &= k
        else:
            return None
        pc += 1
    raise AssertionError("ran off the end of the filter")


_ACTION_FULL = 0xFFFF_0000


def combined_verdict(programs: tuple[bytes, ...], nr: int, arch: int) -> int | None:
    """The verdict of the stacked filters (load order) when it does not depend on the arguments.

    Like kernel/seccomp.c seccomp_run_filters: newest filter first, a strictly more restrictive
    action (lower value, compared as signed) replaces the verdict, so between two ERRNOs the
    newest filter's errno stands. None when any filter's verdict depends on the arguments and
    the newer filters do not already decide it with a refusal."""
    verdict: int | None = None
    for program in reversed(programs):
        own = constant_verdict(program, nr, arch)
        if verdict is None and own is None:
            return None
        if verdict is None:
            verdict = own
            continue
        if own is None:
            if verdict & _ACTION_FULL != SECCOMP_RET_ALLOW:
                continue  # an older filter cannot make a refusal an ALLOW
            return None
        if (own & _ACTION_FULL) < (verdict & _ACTION_FULL):
            verdict = own
    return verdict


@pytest.fixture(scope="module")
def programs() -> tuple[bytes, ...]:
    exported = seccomp_filter.export_bpf()
    assert len(exported) == 2, "the argument filter, then the allowlist"
    return exported


def verdict(programs: tuple[bytes, ...], name: str) -> int | None:
    nr = seccomp_filter._resolve(name)
    assert nr >= 0, f"{name} does not exist on this architecture"
    return combined_verdict(programs, nr, seccomp_filter.native_arch())


@pytest.mark.parametrize("name", seccomp_filter.HOT_SYSCALLS)
def test_hot_syscalls_are_constant_allow_in_every_filter(programs: tuple[bytes, ...], name: str) -> None:
    """A rule on any of these in either filter would run a filter on every request round trip."""
    nr = seccomp_filter._resolve(name)
    for program in programs:
        assert constant_verdict(program, nr, seccomp_filter.native_arch()) == SECCOMP_RET_ALLOW


def test_hot_syscalls_are_named_in_no_rule() -> None:
    _, result = seccomp_filter.build_filters(12345)
    assert not set(result.denied) & set(seccomp_filter.HOT_SYSCALLS)
    assert set(seccomp_filter.HOT_SYSCALLS) <= set(result.allowed)


@pytest.mark.parametrize("name", ["socket", "fork", "execve", "ptrace", "unshare", "bpf", "setsid", "msgget",
                                  "shmget", "semget", "inotify_init1", "fanotify_init", "pidfd_open", "setuid"])
def test_unconditional_refusals_are_constant_eperm(programs: tuple[bytes, ...], name: str) -> None:
    assert verdict(programs, name) == SECCOMP_RET_ERRNO | errno.EPERM


@pytest.mark.parametrize("name", ["getxattr", "lgetxattr", "listxattr", "setxattr", "fsetxattr"])
def test_xattrs_are_constant_enotsup(programs: tuple[bytes, ...], name: str) -> None:
    assert verdict(programs, name) == SECCOMP_RET_ERRNO | errno.ENOTSUP


def test_clone3_is_constant_enosys(programs: tuple[bytes, ...]) -> None:
    assert verdict(programs, "clone3") == SECCOMP_RET_ERRNO | errno.ENOSYS


@pytest.mark.parametrize("name", ["clone", "socketpair", "ioctl", "prctl", "kill", "tgkill", "fcntl", "prlimit64"])
def test_argument_rules_still_inspect_arguments(programs: tuple[bytes, ...], name: str) -> None:
    """These are allowed or refused by argument: the filter must read the argument."""
    assert verdict(programs, name) is None


def test_every_number_the_allowlist_does_not_name_is_refused(programs: tuple[bytes, ...]) -> None:
    """Every syscall number up to well past today's kernels (and the x32 range) is either
    allowed by name, or refused; listmount (458) and statmount (457), which this libseccomp does
    not know, and numbers no kernel has yet, answer ENOSYS."""
    arch = seccomp_filter.native_arch()
    allowed_numbers = {seccomp_filter._resolve(n) for n in seccomp_filter.allowed_names()}
    for nr in [*range(0, 1024), 0x4000_0000 + 41, 0x4000_0000 + 59, 0xFFFF_FFFF]:
        got = combined_verdict(programs, nr, arch)
        if nr in allowed_numbers:
            assert got is None or got == SECCOMP_RET_ALLOW, (nr, got)
        else:
            assert got is not None, nr
            assert got & _ACTION_FULL == SECCOMP_RET_ERRNO, (nr, got)
    for nr in (457, 458, 470, 1000):
        assert nr not in allowed_numbers
        assert combined_verdict(programs, nr, arch) == SECCOMP_RET_ERRNO | errno.ENOSYS


def test_every_allowed_group_has_a_reason() -> None:
    for group, (names, reason) in seccomp_filter.ALLOWED.items():
        assert names, group
        assert len(reason) > 20, group


def test_foreign_architecture_is_refused(programs: tuple[bytes, ...]) -> None:
    nr = seccomp_filter._resolve("read")
    assert combined_verdict(programs, nr, 0x4000_0003) == SECCOMP_RET_ERRNO | errno.EPERM  # i386


def test_filter_leaves_speculation_controls_to_the_kernel() -> None:
    """SECCOMP_FILTER_FLAG_SPEC_ALLOW is not requested: on kernels that mitigate SSB or
    indirect branches for seccomp tasks, workers keep that protection (docs/confinement.md)."""
    filters, _ = seccomp_filter.build_filters(12345)
    for flt in filters:
        assert flt.get_attr(seccomp_filter.seccomp.Attr.CTL_SSB) == 0
