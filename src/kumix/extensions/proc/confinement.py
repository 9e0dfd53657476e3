"""OS-level confinement of a proc worker, applied in the worker before extension code loads.

Interface contract (the spawn path calls `confine_worker` exactly once, in the forked
worker, after its channel fds are in place and basic process hygiene — rlimits, closed fds,
allowlisted environment, PDEATHSIG, own process group — is done, and before the extension's
entry file is imported; the worker must still be single-threaded unless the kernel has
Landlock ABI 8):

- `confine_worker(spec)` applies, in this order: a PID namespace of the worker's own (with the
  user namespace on a non-root host), entered by forking once more — the caller stays behind
  as the supervisor and never returns (pid_namespace.py), only the child, pid 1 there, goes on;
  the scratch directory handed to the worker's uid (root host); the worker's own mount, IPC
  and network namespaces with a read-only root holding only the runtime, the extension directory and
  the scratch directory; the Landlock rules prepared (paths are opened while the worker can
  still reach them); when running as root, the switch to the extension's own unprivileged
  uid/gid with every capability dropped (bounding set included) and then a user namespace of
  its own; on a non-root host, every capability held in its user namespace dropped; after each
  identity and namespace change PDEATHSIG set again and the parent checked (an orphan exits);
  no_new_privs; the task limit (RLIMIT_NPROC); Landlock enforcement; the seccomp filters. It
  returns a `ConfinementReport` saying which layers are active and by which paths the
  extension and scratch directories are reachable from now on (use `report.extension_dir` /
  `report.scratch_dir` to import the entry file and to fill the SDK's worker context: without
  the namespaces, after the uid switch the original path may be unreachable).
  When `spec.required` is true and a layer cannot be applied it raises `ConfinementUnavailable`
  naming the layer (the worker then reports that code and exits) — except `namespaces` when
  `spec.accept_without_namespaces` (the policy's `allowWithoutNamespaces`); when it is false
  the layer is skipped, and `report.warning()` is the text the host shows on every start.
- `machine_probe.probe_machine()` says which layers this machine supports, for `kumix doctor`,
  by forking a throwaway child that confines itself here (`probe_child`), never the calling process.

Simulating a machine without a layer (tests, `kumix doctor`): the environment variable
`KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE` (comma-separated layer names, or `all`) or the spec
field `simulate_unavailable`. A simulated layer is treated exactly like a missing one: with
`required` the worker refuses to start; without it the layer is reported off. The variable is
read both when this module is imported (the fork server imports it before workers are forked
with an allowlisted environment) and at each call, and the sets are united: it can only take
layers away from an unrequired confinement or make a required one fail, never turn a refusal
into an unconfined start.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import socket
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumix.core.errors import ConfinementUnavailable
from kumix.extensions.proc import (
    hygiene,
    landlock_rules,
    namespaces,
    pid_namespace,
    privileges,
    runtime_access,
    seccomp_filter,
)
from kumix.extensions.proc.layers import LAYERS, WEAKER_WITHOUT_NAMESPACES, ConfinementReport
from kumix.extensions.proc.simulation import SIMULATE_ENV

DEFAULT_MAX_TASKS = 32
"""Tasks (threads; a worker cannot fork) per worker when the caller names no limit; the policy's
`proc.maxTasksPerWorker` is what the host passes."""


def _parse_simulated(raw: str | None) -> frozenset[str]:
    if not raw:
        return frozenset()
    names = {part.strip() for part in raw.split(",") if part.strip()}
    if "all" in names:
        return frozenset(LAYERS)
    return frozenset(names)


_SIMULATED_AT_IMPORT = _parse_simulated(os.environ.get(SIMULATE_ENV))


def simulated_unavailable(extra: Iterable[str] = ()) -> frozenset[str]:
    """Layers to treat as missing: import-time env, call-time env and `extra`, united."""
    return _SIMULATED_AT_IMPORT | _parse_simulated(os.environ.get(SIMULATE_ENV)) | frozenset(extra)


@dataclass(frozen=True)
class ConfinementSpec:
    extension_dir: Path
    scratch_dir: Path | None
    """Writable private directory, only when the extension declares `fs.scratch`."""
    required: bool
    read_only_paths: tuple[Path, ...] = ()
    """Extra read-only paths (the Python runtime and its packages are added by this module)."""
    worker_uid: int | None = None
    worker_gid: int | None = None
    """Identity the worker takes when the host runs as root; by default the extension's own
    (`privileges.extension_identity(extension_id)`), else nobody (see docs/confinement.md)."""
    simulate_unavailable: frozenset[str] = frozenset()
    """Layers to treat as missing on this machine (testing aid; can only make things stricter)."""
    extension_id: str | None = None
    parent_pid: int | None = None
    """The process this worker must not outlive (the fork server); by default the parent at the
    time `confine_worker` starts. Checked after every identity and namespace change."""
    max_tasks: int = DEFAULT_MAX_TASKS
    pid_report_fd: int | None = None
    """Where the supervisor left behind by the PID namespace's fork reports the worker's pid and
    wait status (the fork server's pipe, hygiene.REPORT_FD); consumed (closed) either way."""
    accept_without_namespaces: bool = False
    """The policy's `proc.allowWithoutNamespaces`: with `required`, a missing namespaces layer is
    reported but does not refuse the worker."""

    def identity(self) -> tuple[int, int]:
        if self.worker_uid is not None:
            return self.worker_uid, self.worker_gid if self.worker_gid is not None else self.worker_uid
        if self.extension_id is not None:
            ident = privileges.extension_identity(self.extension_id)
            return ident, ident
        return privileges.NOBODY_ID, privileges.NOBODY_ID


class _Confiner:
    """One confinement attempt: collects which layer worked and why one did not."""

    def __init__(self, spec: ConfinementSpec) -> None:
        self.spec = spec
        self.layers: dict[str, bool] = dict.fromkeys(LAYERS, False)
        self.problems: dict[str, str] = {}
        self.details: dict[str, Any] = {}
        self.simulated = simulated_unavailable(spec.simulate_unavailable)
        self.parent_witness: int | None = None
        """Once this process is pid 1 of its own PID namespace: the read end of the pipe only
        its parent (the supervisor) writes to, the witness of the parent-death check."""

    def fail(self, layer: str, reason: str) -> None:
        self.layers[layer] = False
        self.problems[layer] = reason
        if self.spec.required and not self.accepted(layer):
            raise ConfinementUnavailable(
                f"OS confinement layer {layer!r} is required by the policy but unavailable: {reason}",
                details={"layer": layer, "reason": reason},
            )

    def accepted(self, layer: str) -> bool:
        return self.spec.accept_without_namespaces and layer in WEAKER_WITHOUT_NAMESPACES

    def wanted(self, layer: str) -> bool:
        if layer in self.simulated:
            self.fail(layer, f"simulated unavailable ({SIMULATE_ENV})")
            return False
        return True

    def report(self, extension_dir: Path | None, scratch_dir: Path | None) -> ConfinementReport:
        accepted = tuple(n for n in LAYERS if not self.layers[n] and self.accepted(n))
        return ConfinementReport(
            dict(self.layers), dict(self.problems), dict(self.details), extension_dir, scratch_dir, accepted
        )


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _read_paths(spec: ConfinementSpec) -> tuple[Path, ...]:
    paths = [spec.extension_dir.resolve(), *runtime_access.python_runtime_paths()]
    paths += [p.resolve() for p in spec.read_only_paths]
    return tuple(dict.fromkeys(paths))


def _hand_scratch_to_worker(scratch: Path, uid: int, gid: int) -> None:
    """The scratch directory becomes the worker's own: owned by its uid, mode 0700. Opened with
    O_NOFOLLOW so a symlink put in its place cannot redirect the chown."""
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _status_fields(fd: int) -> dict[str, str]:
    """Re-read /proc/self/status through a descriptor opened before Landlock (which would refuse
    to open it now); procfs regenerates the text on each read from offset 0."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    fields: dict[str, str] = {}
    for line in b"".join(chunks).decode("ascii", "replace").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _still_with_parent(c: _Confiner, parent: int, after: str) -> None:
    """A uid switch (and a change of capabilities) clears the parent-death signal: set it again
    and, because the parent may have died before it took effect, check that the parent is still
    the expected one. An orphan exits at once: nobody is left to serve, and it must not live on."""
    hygiene.die_with_parent(parent, c.parent_witness)
    c.details.setdefault("parent_death_checked_after", []).append(after)


def _exposures(read_paths: tuple[Path, ...], write_paths: tuple[Path, ...]) -> list[namespaces.Exposure]:
    """Shallowest first, so a path nested in another one is mounted on top of it, not under."""
    exposures = [namespaces.Exposure(p) for p in read_paths]
    exposures += [namespaces.Exposure(p, writable=True) for p in write_paths]
    return sorted(exposures, key=lambda e: len(e.path.parts))


def _limit_tasks(c: _Confiner, max_tasks: int, own_user_namespace: bool, was_root: bool, supervisor: bool) -> None:
    """RLIMIT_NPROC counts the tasks of the caller's uid in the caller's user namespace (Linux
    5.14+). In the worker's own user namespace that is exactly its own threads; on a root host
    without one it is every worker of the extension's uid. On a non-root host without one it
    would be every process of the user, so the runtime's own thread limit stands in (weaker:
    it counts threads started through Python's `threading`/`_thread`, not a raw pthread_create
    through ctypes — docs/confinement.md). With `supervisor`, the PID namespace's supervisor is
    one more task of the same uid in the same user namespace (a non-root host's worker): the
    limit counts it, so the worker keeps `max_tasks` of its own."""
    if own_user_namespace:
        scope = "worker"
    elif was_root:
        scope = "extension uid"
    else:
        runtime_thread_limit(max_tasks)
        c.details["max_tasks"] = max_tasks
        c.details["task_limit_scope"] = "runtime"
        c.layers["task_limit"] = True
        return
    counted = max_tasks + 1 if supervisor else max_tasks
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (counted, counted))
    except (OSError, ValueError) as exc:
        c.fail("task_limit", f"setrlimit(RLIMIT_NPROC) failed: {exc}")
        return
    c.details["max_tasks"] = max_tasks
    c.details["task_limit_scope"] = scope
    c.layers["task_limit"] = True


def runtime_thread_limit(max_tasks: int) -> None:
    """Refuse a new Python thread once `max_tasks` threads run, the way the kernel refuses one
    at RLIMIT_NPROC (RuntimeError "can't start new thread"): the extension's own call fails."""
    import _thread
    import threading

    start = _thread.start_new_thread

    def limited(function: Any, args: Any, kwargs: Any = None) -> int:
        if threading.active_count() >= max_tasks:
            raise RuntimeError(f"can't start new thread (the worker's limit is {max_tasks} threads)")
        return start(function, args, kwargs) if kwargs is not None else start(function, args)

    _thread.start_new_thread = limited
    threading._start_new_thread = limited  # type: ignore[attr-defined]


def confine_worker(spec: ConfinementSpec) -> ConfinementReport:
    """Confine the calling process for good. See the module docstring for the contract."""
    c = _Confiner(spec)
    if not sys.platform.startswith("linux"):
        for layer in LAYERS:
            c.fail(layer, "OS confinement is implemented for Linux only")
        return c.report(spec.extension_dir, spec.scratch_dir)

    threads = _thread_count()
    abi = landlock_rules.abi_version()
    c.details["landlock_abi"] = abi
    c.details["threads"] = threads
    was_root = privileges.running_as_root()
    c.details["host_uid"] = os.geteuid()
    parent = spec.parent_pid if spec.parent_pid is not None else os.getppid()
    worker_uid, worker_gid = spec.identity()

    # 1. Decide what is possible before changing anything, so a required confinement fails
    #    cleanly with the first missing layer instead of half-way through.
    want_landlock = c.wanted("landlock")
    if want_landlock and abi < 1:
        c.fail("landlock", "the kernel has no Landlock (needs Linux >= 5.13 with lsm=landlock)")
        want_landlock = False
    if want_landlock and threads > 1 and abi < 8:
        c.fail("landlock", f"worker already has {threads} threads and Landlock ABI {abi} < 8 cannot cover them")
        want_landlock = False
    want_seccomp = c.wanted("seccomp")
    if want_seccomp and seccomp_filter.api_level() < 1:
        c.fail("seccomp", "libseccomp reports no kernel seccomp filter support")
        want_seccomp = False
    if want_seccomp:
        # Compiled while files can still be written (a fork server has it cached already).
        seccomp_filter.precompile()
    want_nnp = c.wanted("no_new_privs")
    want_unprivileged = c.wanted("unprivileged")
    want_namespaces = c.wanted("namespaces")
    if want_namespaces and (reason := namespaces.unavailable_reason()) is not None:
        c.fail("namespaces", reason)
        want_namespaces = False
    if want_namespaces and threads > 1:
        c.fail("namespaces", f"worker already has {threads} threads; unshare(CLONE_NEWUSER) needs a single thread")
        want_namespaces = False
    want_task_limit = c.wanted("task_limit")

    # 1b. Into the PID namespace first, before this process writes much memory (each page it
    #     writes before the fork is copied once more by the worker): the parent stays behind as
    #     the supervisor and never returns; this process goes on as pid 1, with a parent it
    #     cannot name (getppid() is 0), so from here on a witness pipe stands in for the pid.
    own_user_namespace = False
    supervised = False
    if want_namespaces:
        try:
            namespaces.enter_pid_namespace(new_user_namespace=not was_root)
        except OSError as exc:
            c.fail("namespaces", f"could not enter the worker's PID namespace: {exc}")
            want_namespaces = False
        else:
            own_user_namespace = not was_root
            hygiene.die_with_parent(parent)  # the supervisor-to-be, still in the host's PID namespace
            c.parent_witness = pid_namespace.become_pid_one(spec.pid_report_fd)
            supervised = True
            _still_with_parent(c, parent, "pid namespace")
            c.details["pid_in_namespace"] = os.getpid()
    if spec.pid_report_fd is not None and not supervised:
        # No PID namespace: this process is the worker itself; the fork server sees EOF.
        os.close(spec.pid_report_fd)

    status_fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    proc_dir_fd = namespaces.open_own_proc_dir()
    try:
        read_paths = _read_paths(spec)
        write_paths = (spec.scratch_dir.resolve(),) if spec.scratch_dir is not None else ()
        c.details["read_paths"] = read_paths
        c.details["write_paths"] = write_paths
        if was_root and want_unprivileged and spec.scratch_dir is not None:
            _hand_scratch_to_worker(spec.scratch_dir, worker_uid, worker_gid)

        # 2. The view: from here on only the read and write paths exist (same names as before).
        #    A root host enters the namespaces as root (it needs no user namespace for them) and
        #    one of its own after the uid switch; a non-root host needs the user namespace first.
        if want_namespaces:
            try:
                namespaces.enter(_exposures(read_paths, write_paths), new_user_namespace=False)
                c.layers["namespaces"] = True
                c.details["namespaces"] = ["mount", "ipc", "net", "pid", *(["user"] if own_user_namespace else [])]
                _still_with_parent(c, parent, "namespaces")
            except OSError as exc:
                c.fail("namespaces", f"could not enter the worker's namespaces: {exc}")
                want_namespaces = False

        # 3. Landlock rules are added now, while every path can still be opened.
        prepared: landlock_rules.PreparedRuleset | None = None
        if want_landlock:
            try:
                prepared = landlock_rules.prepare(read_paths, write_paths)
            except OSError as exc:
                c.fail("landlock", f"could not build the ruleset: {exc}")

        # 4. Privileges: become the extension's uid (root host) or shed capabilities (the
        #    capabilities a non-root host's worker holds inside its user namespace included).
        fds = runtime_access.TraversalFds()
        if want_unprivileged:
            try:
                if was_root:
                    if not c.layers["namespaces"]:
                        # Without the view, paths under a 0700 /root stay reachable only by fd.
                        fds = runtime_access.open_traversal_fds([*read_paths, *write_paths], worker_uid, worker_gid)
                    privileges.switch_to_unprivileged(worker_uid, worker_gid)
                    _still_with_parent(c, parent, "uid switch")
                    if c.layers["namespaces"]:
                        namespaces.enter_user_namespace(proc_dir_fd)
                        own_user_namespace = True
                        c.details["namespaces"].append("user")
                        privileges.drop_capabilities()
                        _still_with_parent(c, parent, "user namespace")
                else:
                    privileges.drop_capabilities()
                    _still_with_parent(c, parent, "capability drop")
                identity = privileges.current_identity()
                c.details["uid"], c.details["gid"] = identity.uid, identity.gid
                c.layers["unprivileged"] = True
            except (OSError, ValueError) as exc:
                c.fail("unprivileged", f"could not drop privileges: {exc}")

        # 5. no_new_privs before the two kernel filters (both require it without CAP_SYS_ADMIN).
        if want_nnp:
            try:
                privileges.set_no_new_privs()
                c.layers["no_new_privs"] = privileges.no_new_privs()
            except OSError as exc:
                c.fail("no_new_privs", f"prctl(PR_SET_NO_NEW_PRIVS) failed: {exc}")

        # 6. The task limit, after the last identity change (a new user namespace starts a new
        #    count, and a uid switch over the limit would mark the process).
        if want_task_limit:
            _limit_tasks(c, spec.max_tasks, own_user_namespace, was_root, supervised and not was_root)

        # 7. Landlock, then seccomp last (the filter would not stop the Landlock calls, but
        #    anything that fails after it would be harder to explain).
        if prepared is not None:
            try:
                ll_status = prepared.enforce()
                c.details["landlock_tcp"] = ll_status.tcp
                c.details["landlock_scoped"] = ll_status.scoped
                c.layers["landlock"] = ll_status.filesystem
            except OSError as exc:
                c.fail("landlock", f"landlock_restrict_self failed: {exc}")
        if want_seccomp:
            try:
                result = seccomp_filter.install()
                c.details["seccomp_denied"] = result.denied
                c.details["seccomp_allowed"] = len(result.allowed)
                if result.unknown:
                    c.details["seccomp_unknown_to_libseccomp"] = result.unknown
                c.layers["seccomp"] = True
            except OSError as exc:
                c.fail("seccomp", f"loading the seccomp filter failed: {exc}")

        # 8. Trust but verify: the kernel's own view of this process.
        _verify(c, _status_fields(status_fd), was_root)
    finally:
        os.close(status_fd)
        os.close(proc_dir_fd)
        if c.parent_witness is not None:
            # PDEATHSIG stays set: no identity change can follow (no capability is left).
            os.close(c.parent_witness)

    if fds.names:
        c.details["traversal_fds"] = {str(k): str(v) for k, v in fds.names.items()}
        runtime_access.redirect_imports(fds)
    extension_dir = fds.reach(spec.extension_dir.resolve())
    scratch_dir = fds.reach(spec.scratch_dir.resolve()) if spec.scratch_dir is not None else None
    if spec.scratch_dir is not None and scratch_dir is not None:
        _point_environment_at(spec.scratch_dir, scratch_dir)
    return c.report(extension_dir, scratch_dir)


def _point_environment_at(scratch: Path, reachable: Path) -> None:
    """The worker's HOME and TMPDIR name its scratch directory; after a uid switch that name may
    no longer be reachable, so give them the name that is (and let tempfile look again)."""
    if reachable == scratch:
        return
    for key in ("HOME", "TMPDIR"):
        if os.environ.get(key) in (str(scratch), str(scratch.resolve())):
            os.environ[key] = str(reachable)
    tempfile.tempdir = None


def _verify(c: _Confiner, status: dict[str, str], was_root: bool) -> None:
    masks = privileges.capability_masks("\n".join(f"{k}:{v}" for k, v in status.items()))
    c.details["capabilities"] = {k: f"{v:016x}" for k, v in masks.items()}
    if c.layers["unprivileged"]:
        held = {k: v for k, v in masks.items() if v and (k != "CapBnd" or was_root)}
        if held or (was_root and os.geteuid() == 0):
            c.fail("unprivileged", f"capabilities still held after the drop: {sorted(held)}")
    if c.layers["no_new_privs"] and status.get("NoNewPrivs") != "1":
        c.fail("no_new_privs", "the kernel does not report NoNewPrivs: 1")
    if c.layers["seccomp"] and status.get("Seccomp") != "2":
        c.fail("seccomp", f"the kernel reports Seccomp: {status.get('Seccomp')} (2 = filter)")
    # /proc is never part of the view: if it still resolves, the pivot did not happen.
    if c.layers["namespaces"] and os.path.lexists("/proc/self"):
        c.fail("namespaces", "/proc is still visible after the pivot into the worker's own root")
    if c.layers["landlock"]:
        # The root directory is never in the read set: opening it must be refused now.
        try:
            os.close(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except PermissionError:
            pass
        else:
            c.fail("landlock", "the root directory is still readable after enforcement")


# --- probing, for `kumix doctor` -------------------------------------------------------------

def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _fork_and_reap() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - only if the filter failed to refuse fork
        os._exit(0)
    os.waitpid(pid, 0)


def _probe_checks() -> dict[str, str]:
    """Attempts a confined worker must fail, run inside the probe child after confinement."""
    checks: dict[str, str] = {}

    def attempt(name: str, action: Any) -> None:
        try:
            action()
            checks[name] = "ALLOWED"
        except OSError as exc:
            checks[name] = _errno_name(exc)

    attempt("socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    attempt("fork", _fork_and_reap)
    attempt("read_etc", lambda: open("/etc/hostname", "rb").close())
    attempt("write_tmp", _write_and_remove_tmp_file)
    attempt("sysv_msgget", _sysv_message_queue)
    attempt("listmount", _listmount)
    attempt("mounts_visible", lambda: os.stat("/proc/self/mountinfo"))
    return checks


_libc = ctypes.CDLL(None, use_errno=True)
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0
SYS_LISTMOUNT_X86_64 = 458
"""listmount(2), Linux 6.8: newer than the allowlist (and this libseccomp), so refused by default."""


def _sysv_message_queue() -> None:
    qid = _libc.msgget(IPC_PRIVATE, IPC_CREAT | 0o600)
    if qid < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    _libc.msgctl(qid, IPC_RMID, None)  # only reached when the attempt worked: leave nothing behind


def _listmount() -> None:
    if os.uname().machine != "x86_64":
        raise OSError(errno.ENOSYS, "listmount probe is written for x86_64")
    # A zeroed request is invalid (EINVAL) on a kernel that lets the call through at all.
    request = ctypes.create_string_buffer(32)
    out = (ctypes.c_uint64 * 4)()
    if _libc.syscall(ctypes.c_long(SYS_LISTMOUNT_X86_64), request, out, ctypes.c_size_t(4), ctypes.c_uint(0)) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _write_and_remove_tmp_file() -> None:
    path = Path("/tmp") / f"kumix-probe-{os.getpid()}"  # noqa: S108
    path.write_bytes(b"")
    path.unlink()  # only reached when the write was allowed: leave nothing behind


def probe_child(extension_dir: Path, simulate_unavailable: frozenset[str]) -> dict[str, Any]:
    """The probe child's part (machine_probe.py forks it): confine this process as a worker with
    an empty extension directory would be, try what it must not do, and say what held."""
    spec = ConfinementSpec(extension_dir=extension_dir, scratch_dir=None, required=False,
                           simulate_unavailable=simulate_unavailable)
    # Asked before confining, while nothing is refused yet: what the kernel and libseccomp offer.
    landlock_abi, seccomp_api = landlock_rules.abi_version(), seccomp_filter.api_level()
    report = confine_worker(spec)
    return {"report": report.to_json(), "checks": _probe_checks(), "landlock_abi": landlock_abi,
            "seccomp_api": seccomp_api}
