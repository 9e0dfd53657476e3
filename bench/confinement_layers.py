"""Where a confined round trip goes: a pipe ping-pong with each confinement layer alone and combined.

    .venv/bin/python bench/confinement_layers.py [--iterations N] [--rounds R] [--cases a,b,...]

The parent (never confined) forks one child per case; the child applies the layers of its
case and then answers 64-byte pings on a pipe pair with blocking read/write, like the worker
runtime. The parent measures round trips with blocking read/write too. Cases are interleaved
over `--rounds` rounds and the median of the rounds is printed next to the unconfined child
(`none`) as the baseline. Each child also reports its /proc/self/status speculation lines and
PR_GET_SPECULATION_CTRL, so a mitigation the kernel applies for seccomp shows up here.
Not a test: nothing here asserts a threshold.

Layers: `rlimits` (hygiene.apply_rlimits with the strict policy's values), `uid` (switch to
65534 with every capability dropped, as for a root host), `traversal` (the O_PATH descriptors
and the sys.path rewrite of runtime_access), `landlock` (the worker's read set), `seccomp`
(the worker's two filters as built by seccomp_filter.build_filters), `namespaces` (the worker's
own user/mount/IPC/net namespaces and its pivoted root), `seccomp-ssb` (same, loaded with
SCMP_FLTATR_CTL_SSB = SECCOMP_FILTER_FLAG_SPEC_ALLOW), `seccomp-tree` (same, with libseccomp's
binary-tree layout, SCMP_FLTATR_CTL_OPTIMIZE = 2), `seccomp-allow` (a filter with no rule
at all: the cost of having a filter), `full` (confine_worker exactly as a worker runs it),
`full-without-seccomp` (confine_worker with the seccomp layer left out).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyseccomp as seccomp

from kumix.extensions.proc import (
    confinement,
    hygiene,
    landlock_rules,
    namespaces,
    privileges,
    runtime_access,
    seccomp_filter,
)

PR_GET_SPECULATION_CTRL = 52
PR_SPEC_STORE_BYPASS = 0
PR_SPEC_INDIRECT_BRANCH = 1
MESSAGE = b"x" * 64
_PARENT_FDS: list[int] = []
"""Pipe ends the parent keeps for earlier children: a later child closes its copies, or an
earlier child would never see end-of-file."""


def _rlimits() -> None:
    hygiene.apply_rlimits(hygiene.WorkerLimits(max_memory_mb=512, max_cpu_seconds=60, max_log_bytes=1 << 20))


def _uid(ext_dir: Path) -> None:
    privileges.switch_to_unprivileged(privileges.NOBODY_ID, privileges.NOBODY_ID)


def _traversal(ext_dir: Path) -> None:
    roots = [ext_dir, *runtime_access.python_runtime_paths()]
    fds = runtime_access.open_traversal_fds(roots, privileges.NOBODY_ID, privileges.NOBODY_ID)
    runtime_access.redirect_imports(fds)


def _landlock(ext_dir: Path) -> None:
    prepared = landlock_rules.prepare([ext_dir, *runtime_access.python_runtime_paths()], [])
    privileges.set_no_new_privs()
    prepared.enforce()


def _seccomp(ssb: bool) -> Callable[[Path], None]:
    def apply(ext_dir: Path) -> None:
        filters, _ = seccomp_filter.build_filters(os.getpid())
        for flt in filters:
            if ssb:
                flt.set_attr(seccomp.Attr.CTL_SSB, 1)
            flt.load()

    return apply


def _seccomp_tree(ext_dir: Path) -> None:
    filters, _ = seccomp_filter.build_filters(os.getpid())
    for flt in filters:
        flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
        flt.load()


def _namespaces(ext_dir: Path) -> None:
    exposures = [namespaces.Exposure(p) for p in (ext_dir, *runtime_access.python_runtime_paths())]
    namespaces.enter(exposures, new_user_namespace=not privileges.running_as_root())


def _seccomp_allow(ext_dir: Path) -> None:
    seccomp.SyscallFilter(seccomp.ALLOW).load()


def _full(ext_dir: Path) -> None:
    confinement.confine_worker(confinement.ConfinementSpec(extension_dir=ext_dir, scratch_dir=None, required=True))


def _full_without_seccomp(ext_dir: Path) -> None:
    spec = confinement.ConfinementSpec(
        extension_dir=ext_dir, scratch_dir=None, required=False, simulate_unavailable=frozenset({"seccomp"})
    )
    confinement.confine_worker(spec)


LAYERS: dict[str, Callable[[Path], None]] = {
    "rlimits": lambda _d: _rlimits(),
    "uid": _uid,
    "traversal": _traversal,
    "landlock": _landlock,
    "namespaces": _namespaces,
    "seccomp": _seccomp(False),
    "seccomp-ssb": _seccomp(True),
    "seccomp-allow": _seccomp_allow,
    "seccomp-tree": _seccomp_tree,
    "full": _full,
    "full-without-seccomp": _full_without_seccomp,
}

CASES: dict[str, tuple[str, ...]] = {
    "none": (),
    "rlimits": ("rlimits",),
    "uid": ("uid",),
    "traversal+uid": ("traversal", "uid"),
    "landlock": ("landlock",),
    "namespaces": ("namespaces",),
    "seccomp-allow": ("seccomp-allow",),
    "seccomp": ("seccomp",),
    "seccomp-ssb": ("seccomp-ssb",),
    "seccomp-tree": ("seccomp-tree",),
    "all-but-seccomp": ("rlimits", "full-without-seccomp"),
    "full": ("rlimits", "full"),
    "full-with-ssb-seccomp": ("rlimits", "full-without-seccomp", "seccomp-ssb"),
}


def _syscall_costs(n: int = 200_000) -> str:
    """ns per call, measured inside the (possibly filtered) child: getppid has no rule in the
    worker's filter (constant allow, answered from the kernel's seccomp cache); kill(own pid, 0)
    has an argument rule, so the BPF program runs for it."""
    own = os.getpid()
    getppid, kill = os.getppid, os.kill
    start = time.perf_counter()
    for _ in range(n):
        getppid()
    plain = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        kill(own, 0)
    filtered = (time.perf_counter() - start) / n
    return f"getppid {plain * 1e9:.0f} ns, kill(self,0) {filtered * 1e9:.0f} ns"


class Child:
    def __init__(self, name: str, layers: tuple[str, ...], ext_dir: Path, cpu: int | None) -> None:
        self.name = name
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        info_r, info_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            code = 0
            try:
                os.close(self.to_child)
                os.close(self.from_child)
                os.close(info_r)
                for fd in _PARENT_FDS:
                    os.close(fd)
                if cpu is not None:
                    os.sched_setaffinity(0, {cpu})
                # Speculation lines are read before Landlock hides /proc from the child.
                status_fd = os.open("/proc/self/status", os.O_RDONLY)
                for layer in layers:
                    LAYERS[layer](ext_dir)
                os.lseek(status_fd, 0, os.SEEK_SET)
                text = os.read(status_fd, 65536).decode()
                spec = [ln.strip() for ln in text.splitlines() if ln.startswith(("Speculation", "Seccomp:"))]
                libc = ctypes.CDLL(None, use_errno=True)
                for label, which in (("ssb", PR_SPEC_STORE_BYPASS), ("ib", PR_SPEC_INDIRECT_BRANCH)):
                    spec.append(f"prctl({label})={libc.prctl(PR_GET_SPECULATION_CTRL, which, 0, 0, 0)}")
                spec.append(_syscall_costs())
                os.write(info_w, ("; ".join(spec)).encode())
                os.close(info_w)
                read, write = os.read, os.write
                while data := read(to_child_r, 4096):
                    write(from_child_w, data)
            except BaseException as exc:
                os.write(2, f"child {name}: {type(exc).__name__}: {exc}\n".encode())
                code = 1
            finally:
                os._exit(code)
        os.close(to_child_r)
        os.close(from_child_w)
        os.close(info_w)
        _PARENT_FDS.extend((self.to_child, self.from_child))
        self.info = os.read(info_r, 65536).decode()
        os.close(info_r)

    def measure(self, n: int) -> float:
        write, read, to, frm = os.write, os.read, self.to_child, self.from_child
        start = time.perf_counter()
        for _ in range(n):
            write(to, MESSAGE)
            read(frm, 4096)
        return (time.perf_counter() - start) / n

    def close(self) -> None:
        os.close(self.to_child)
        os.close(self.from_child)
        os.waitpid(self.pid, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--pin", action="store_true", help="pin parent to CPU 0 and children to CPU 1")
    parser.add_argument("--same-cpu", action="store_true", help="pin parent and children to CPU 0")
    args = parser.parse_args()
    names = [c for c in args.cases.split(",") if c]
    child_cpu = None
    if args.pin or args.same_cpu:
        os.sched_setaffinity(0, {0})
        child_cpu = 0 if args.same_cpu else 1
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cpus; pin={args.pin} same_cpu={args.same_cpu}")
    with tempfile.TemporaryDirectory(prefix="kumix-layers-") as tmp:
        ext_dir = Path(tmp)
        os.chmod(ext_dir, 0o755)
        children = {name: Child(name, CASES[name], ext_dir, child_cpu) for name in names}
        samples: dict[str, list[float]] = {name: [] for name in names}
        for child in children.values():
            child.measure(300)
        for _ in range(args.rounds):
            for name, child in children.items():
                samples[name].append(child.measure(args.iterations))
        for child in children.values():
            child.close()
    base = statistics.median(samples["none"]) if "none" in samples else None
    print(f"{'case':24} {'median':>10} {'min':>9} {'max':>9}  ratio   kernel view")
    for name in names:
        s = samples[name]
        med = statistics.median(s)
        ratio = f"{med / base:5.2f}x" if base else "     "
        info = children[name].info
        print(f"{name:24} {med * 1e6:8.1f}µs {min(s) * 1e6:7.1f}µs {max(s) * 1e6:7.1f}µs  {ratio}  {info}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
