"""The shape of the worker's seccomp filter: what keeps its per-call cost at zero.

The kernel (5.11+) walks each new filter once for every syscall number and caches those whose
verdict is ALLOW whatever the arguments; a cached syscall never runs the BPF program. A rule on
a syscall — even an argument check that allows most calls — takes it out of the cache. These
tests walk the exported BPF program exactly as the kernel's `seccomp_is_const_allow()` does
(kernel/seccomp.c) and check that every syscall of a request round trip stays cached, while the
refusals keep their constant errno and the argument-checked rules stay argument-checked.
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


@pytest.fixture(scope="module")
def program() -> bytes:
    return seccomp_filter.export_bpf()


def verdict(program: bytes, name: str) -> int | None:
    nr = seccomp_filter._resolve(name)
    assert nr >= 0, f"{name} does not exist on this architecture"
    return constant_verdict(program, nr, seccomp_filter.native_arch())


@pytest.mark.parametrize("name", seccomp_filter.HOT_SYSCALLS)
def test_hot_syscalls_are_constant_allow(program: bytes, name: str) -> None:
    """A rule on any of these would run the filter on every request round trip."""
    assert verdict(program, name) == SECCOMP_RET_ALLOW


def test_hot_syscalls_are_named_in_no_rule() -> None:
    _, result = seccomp_filter.build_filter(12345)
    assert not set(result.denied) & set(seccomp_filter.HOT_SYSCALLS)


@pytest.mark.parametrize("name", ["socket", "fork", "execve", "ptrace", "unshare", "bpf", "setsid"])
def test_unconditional_refusals_are_constant_eperm(program: bytes, name: str) -> None:
    assert verdict(program, name) == SECCOMP_RET_ERRNO | errno.EPERM


def test_clone3_is_constant_enosys(program: bytes) -> None:
    assert verdict(program, "clone3") == SECCOMP_RET_ERRNO | errno.ENOSYS


@pytest.mark.parametrize("name", ["clone", "socketpair", "ioctl", "prctl", "kill", "tgkill", "pidfd_open"])
def test_argument_rules_still_inspect_arguments(program: bytes, name: str) -> None:
    """These are allowed or refused by argument: the filter must read the argument."""
    assert verdict(program, name) is None


def test_foreign_architecture_is_refused(program: bytes) -> None:
    nr = seccomp_filter._resolve("read")
    assert constant_verdict(program, nr, 0x4000_0003) == SECCOMP_RET_ERRNO | errno.EPERM  # i386


def test_filter_leaves_speculation_controls_to_the_kernel() -> None:
    """SECCOMP_FILTER_FLAG_SPEC_ALLOW is not requested: on kernels that mitigate SSB or
    indirect branches for seccomp tasks, workers keep that protection (docs/confinement.md)."""
    flt, _ = seccomp_filter.build_filter(12345)
    assert flt.get_attr(seccomp_filter.seccomp.Attr.CTL_SSB) == 0
