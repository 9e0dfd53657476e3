"""The second attack pass on a confined worker (issue 9): each finding, with the protection off and on.

Modes are those of tests/confinement_harness.py. `none` (or the single layer that the old
design relied on) shows the attack working on this machine; `full` is the worker's confinement;
the single-layer modes show which mechanism stops it. Assertions name the errno, so an attack
stopped by accident does not pass for a defence.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumix.extensions.proc import hygiene, pid_namespace, privileges
from kumix.extensions.proc.confinement import ConfinementSpec, confine_worker
from tests.confinement_harness import FIXTURES, run_attack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmat.restype = ctypes.c_void_p
IPC_CREAT, IPC_RMID, IPC_NOWAIT = 0o1000, 0, 0o4000
ENOMSG = 42


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    ext = tmp_path / "extensions" / "hostile"
    shutil.copytree(FIXTURES / "hostile", ext)
    return ext


def _blocked(result, errno_name: str) -> dict:  # type: ignore[no-untyped-def]
    assert result.answer is not None, f"child died without answering (status {result.status})"
    assert result.outcome == "blocked", result.answer
    assert result.errno == errno_name, result.answer
    return result.answer


def _succeeded(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.answer is not None, f"child died without answering (status {result.status})"
    assert result.outcome == "succeeded", result.answer
    return result.answer


def _key() -> int:
    return 0x4B00_0000 | (os.getpid() & 0xFFFF) << 4 | (time.monotonic_ns() & 0xF)


# --- 1. parent death after the uid switch ----------------------------------------------------


ORPHAN_TIMEOUT_S = 60.0
"""Only a worker that outlived its fork server waits this long (the test then fails)."""


def _orphan_run(confine: bool, ext_dir: Path) -> str:
    """A stand-in fork server P forks a worker W that sets PDEATHSIG (as the worker's hygiene
    does), then either switches uid the old way (nothing re-armed) or runs `confine_worker`.
    P is SIGKILLed; W, if alive, reports so through a pipe once it sees it was orphaned.

    Confined, W forks into its own PID namespace (the process running on is pid 1 there and
    cannot see its parent): it reports its pid as the host sees it, the way the fork server
    learns it, and the test watches that process through a pidfd."""
    ready_r, ready_w = os.pipe()
    alive_r, alive_w = os.pipe()
    report_r, report_w = os.pipe()
    server = os.fork()
    if server == 0:
        os.close(ready_r)
        os.close(alive_r)
        os.close(report_r)
        me = os.getpid()
        worker = os.fork()
        if worker == 0:
            try:
                hygiene.die_with_parent(me)
                if confine:
                    confine_worker(ConfinementSpec(ext_dir, None, required=True, extension_id="hostile",
                                                   parent_pid=me, pid_report_fd=report_w))
                    os.write(ready_w, b"r")
                    while True:  # only its fork server's death may end it
                        time.sleep(1)
                privileges.switch_to_unprivileged(privileges.NOBODY_ID, privileges.NOBODY_ID)
                os.write(ready_w, b"r")
                while os.getppid() == me:
                    time.sleep(0.005)
                os.write(alive_w, b"outlived its fork server")
            finally:
                os._exit(0)
        os.close(alive_w)
        os.close(report_w)
        while True:
            time.sleep(1)
    os.close(ready_w)
    os.close(alive_w)
    os.close(report_w)
    try:
        assert os.read(ready_r, 1) == b"r"
        pidfd = None
        if confine:
            tag, worker_pid = pid_namespace.RECORD.unpack(os.read(report_r, pid_namespace.RECORD.size))
            assert tag == pid_namespace.REPORT_PID
            pidfd = os.pidfd_open(worker_pid)
        os.kill(server, signal.SIGKILL)
        os.waitpid(server, 0)
        if pidfd is not None:
            try:
                if select.select([pidfd], [], [], ORPHAN_TIMEOUT_S)[0]:
                    return ""  # readable: the worker has exited
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return "outlived its fork server"
            finally:
                os.close(pidfd)
        with os.fdopen(alive_r, "rb") as alive:
            return alive.read().decode()  # EOF once the worker is gone, whichever way
    finally:
        os.close(ready_r)
        os.close(report_r)


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid switch is what a root host does")
def test_worker_never_outlives_its_fork_server_after_the_uid_switch(hostile: Path) -> None:
    # The old order: PDEATHSIG set, then setresuid — which clears it. The worker lives on.
    assert _orphan_run(False, hostile) == "outlived its fork server"
    # confine_worker sets it again after every identity and namespace change: gone with it.
    assert _orphan_run(True, hostile) == ""


def test_worker_whose_parent_already_changed_exits_instead_of_serving(hostile: Path) -> None:
    """The race: the fork server dies between a change of identity and the re-armed signal.
    The check against the expected parent catches it (a pid that is not the parent stands in)."""
    pid = os.fork()
    if pid == 0:
        try:
            confine_worker(ConfinementSpec(hostile, None, required=True, parent_pid=os.getppid() + 1_000_000))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == hygiene.EXIT_ORPHANED


# --- 2. SysV IPC -----------------------------------------------------------------------------


def test_sysv_message_queue_of_another_program_is_out_of_reach(hostile: Path) -> None:
    key = _key()
    qid = _libc.msgget(key, IPC_CREAT | 0o666)
    assert qid >= 0
    try:
        sent = _succeeded(run_attack("sysv_message", {"key": key}, mode="none", ext_dir=hostile))
        assert sent["qid"] == qid
        _drain_one(qid)
        _blocked(run_attack("sysv_message", {"key": key}, mode="full", ext_dir=hostile), "EPERM")
        _blocked(run_attack("sysv_message", {"key": key}, mode="seccomp", ext_dir=hostile), "EPERM")
        # Its own IPC namespace alone: the key does not exist there.
        _blocked(run_attack("sysv_message", {"key": key}, mode="namespaces", ext_dir=hostile), "ENOENT")
        # Landlock and the uid switch do not govern SysV IPC (the queue is 0666, as programs make them).
        _succeeded(run_attack("sysv_message", {"key": key}, mode="landlock", ext_dir=hostile))
        _drain_one(qid)
        assert not _has_message(qid)
    finally:
        _libc.msgctl(qid, IPC_RMID, None)


def _has_message(qid: int) -> bool:
    buf = ctypes.create_string_buffer(256)
    return _libc.msgrcv(qid, buf, 200, 0, IPC_NOWAIT) >= 0


def _drain_one(qid: int) -> None:
    assert _has_message(qid), "the attack reported a message it did not deliver"


def test_worker_cannot_leave_a_machine_wide_queue_behind(hostile: Path) -> None:
    key = _key()
    try:
        _succeeded(run_attack("sysv_leave_queue", {"key": key}, mode="none", ext_dir=hostile))
        assert _libc.msgget(key, 0) >= 0, "the unconfined worker left its queue behind"
    finally:
        _libc.msgctl(_libc.msgget(key, 0), IPC_RMID, None)
    _blocked(run_attack("sysv_leave_queue", {"key": key}, mode="full", ext_dir=hostile), "EPERM")
    # In its own IPC namespace the queue is made, and vanishes with the worker.
    _succeeded(run_attack("sysv_leave_queue", {"key": key}, mode="namespaces", ext_dir=hostile))
    assert _libc.msgget(key, 0) < 0
    assert ctypes.get_errno() == 2  # ENOENT: nothing was left in the host's IPC world


def test_sysv_shared_memory_of_another_program_is_out_of_reach(hostile: Path) -> None:
    key = _key()
    shmid = _libc.shmget(key, 4096, IPC_CREAT | 0o666)
    assert shmid >= 0
    addr = _libc.shmat(shmid, None, 0)
    try:
        ctypes.memmove(addr, b"host secret\0", 12)
        assert _succeeded(run_attack("sysv_shared_memory", {"key": key}, mode="none", ext_dir=hostile))["read"] == \
            "host secret"
        assert ctypes.string_at(addr, 15) == b"worker was here"
        ctypes.memmove(addr, b"host secret\0\0\0\0", 15)
        _blocked(run_attack("sysv_shared_memory", {"key": key}, mode="full", ext_dir=hostile), "EPERM")
        _blocked(run_attack("sysv_shared_memory", {"key": key}, mode="seccomp", ext_dir=hostile), "EPERM")
        _blocked(run_attack("sysv_shared_memory", {"key": key}, mode="namespaces", ext_dir=hostile), "ENOENT")
        assert ctypes.string_at(addr, 11) == b"host secret"
    finally:
        _libc.shmdt(ctypes.c_void_p(addr))
        _libc.shmctl(shmid, IPC_RMID, None)


# --- 3. metadata Landlock does not govern ----------------------------------------------------


@pytest.fixture
def private_dir(tmp_path: Path) -> Path:
    """A directory the worker may not read: a file with a user.* xattr, a symlink."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    secret = private / "notes.txt"
    secret.write_text("x" * 1234)
    os.setxattr(secret, "user.tag", b"private-tag")
    (private / "link").symlink_to("/home/someone/.ssh/id_ed25519")
    return private


@pytest.mark.parametrize(
    ("attack", "params", "seccomp_errno"),
    [
        ("read_xattr", {"path": "notes.txt", "name": "user.tag"}, "ENOTSUP"),
        ("read_link", {"path": "link"}, None),
        ("stat_path", {"path": "notes.txt"}, None),
        ("watch_dir", {"path": "."}, "EPERM"),
    ],
)
def test_names_metadata_xattrs_and_events_outside_the_view_do_not_exist(
    hostile: Path, private_dir: Path, attack: str, params: dict[str, str], seccomp_errno: str | None
) -> None:
    params = {**params, "path": str((private_dir / params["path"]).resolve() if params["path"] != "link"
                                    else private_dir / "link")}
    _succeeded(run_attack(attack, params, mode="none", ext_dir=hostile))
    # The finding: Landlock governs opening files, not these. Still root here, so it is Landlock alone.
    _succeeded(run_attack(attack, params, mode="landlock", ext_dir=hostile))
    # In the worker's own view the directory does not exist (xattrs and inotify are refused by
    # the filter before a path is even looked up).
    _blocked(run_attack(attack, params, mode="full", ext_dir=hostile), seccomp_errno or "ENOENT")
    _blocked(run_attack(attack, params, mode="namespaces", ext_dir=hostile), "ENOENT")
    if seccomp_errno is not None:
        _blocked(run_attack(attack, params, mode="seccomp", ext_dir=hostile), seccomp_errno)


# --- 4. one identity per extension -----------------------------------------------------------


@pytest.fixture
def open_data_dir() -> Iterator[Path]:
    """A data directory every uid can traverse (pytest's tmp_path lies under a 0700 directory),
    so that only the scratch directories' own owners and modes decide."""
    base = Path(tempfile.mkdtemp(prefix="kumix-round-two-", dir="/tmp"))  # noqa: S108
    try:
        os.chmod(base, 0o755)  # noqa: S103
        (base / "scratch").mkdir(mode=0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="uids per extension are a root host's; see the non-root test")
def test_worker_cannot_change_another_extensions_scratch_directory(hostile: Path, open_data_dir: Path) -> None:
    own = open_data_dir / "scratch" / "hostile"
    other = open_data_dir / "scratch" / "bystander"
    for path in (own, other):
        path.mkdir(parents=True, mode=0o700)
    params = {"path": str(other)}
    # The old identity: every extension is nobody, so a sibling's scratch dir is "its own".
    os.chown(other, privileges.NOBODY_ID, privileges.NOBODY_ID)
    assert _succeeded(run_attack("change_metadata", params, mode="unprivileged", ext_dir=hostile, scratch=own)) == \
        {"outcome": "succeeded", "chmod": True, "utime": True}
    assert other.stat().st_mode & 0o777 == 0o777
    # As a host hands it over: owned by the bystander extension's own uid.
    bystander_id = privileges.extension_identity("bystander")
    assert bystander_id != privileges.extension_identity("hostile")
    os.chown(other, bystander_id, bystander_id)
    os.chmod(other, 0o700)
    mtime = other.stat().st_mtime
    # Without namespaces the uids differ: the kernel refuses (not the owner).
    _blocked(run_attack("change_metadata", params, mode="weaker", ext_dir=hostile, scratch=own), "EPERM")
    _blocked(run_attack("set_xattr", params, mode="weaker", ext_dir=hostile, scratch=own), "ENOTSUP")
    # With them, the sibling's directory is not in the view at all.
    _blocked(run_attack("change_metadata", params, mode="full", ext_dir=hostile, scratch=own), "ENOENT")
    assert other.stat().st_mode & 0o777 == 0o700
    assert other.stat().st_mtime == mtime
    # Its own scratch dir is its own: mode and times may change there.
    _succeeded(run_attack("change_metadata", {"path": "{scratch}"}, mode="full", ext_dir=hostile, scratch=own))


# --- 5. syscalls the filter does not know ----------------------------------------------------


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="listmount's number is written for x86_64")
def test_listmount_which_the_filter_does_not_know_is_refused(hostile: Path) -> None:
    assert _succeeded(run_attack("list_mounts", mode="none", ext_dir=hostile))["mounts"] > 1
    _blocked(run_attack("list_mounts", mode="full", ext_dir=hostile), "ENOSYS")
    _blocked(run_attack("list_mounts", mode="seccomp", ext_dir=hostile), "ENOSYS")


# --- 6. tasks --------------------------------------------------------------------------------


def test_thread_count_stops_at_the_worker_limit_and_only_its_call_fails(hostile: Path) -> None:
    assert _succeeded(run_attack("many_threads", {"count": 2049}, mode="none", ext_dir=hostile))["threads"] == 2049
    result = run_attack("many_threads", {"count": 2049}, mode="full", ext_dir=hostile)
    answer = _blocked(result, "EAGAIN")
    started = int(answer["message"].rsplit("after ", 1)[1].split()[0])
    # The default limit counts every task of the worker, its main thread included.
    assert 0 < started < 32
    assert result.report is not None
    assert result.report["details"]["max_tasks"] == 32
    assert result.report["details"]["task_limit_scope"] == "worker"
    # The worker answered: its own call failed, the process did not.
    assert result.exit_code == 0


def test_an_exhausted_worker_does_not_exhaust_its_neighbours(hostile: Path) -> None:
    """Two workers of the same extension: one at its limit, the other still starts threads."""
    first = run_attack("many_threads", {"count": 2049}, mode="full", ext_dir=hostile)
    _blocked(first, "EAGAIN")
    second = run_attack("many_threads", {"count": 8}, mode="full", ext_dir=hostile)
    assert _succeeded(second)["threads"] == 8


def test_report_names_each_layer_in_json(hostile: Path) -> None:
    report = run_attack("identity", mode="full", ext_dir=hostile).report
    assert report is not None
    json.dumps(report)
    assert report["layers"]["namespaces"] is True
    assert report["layers"]["task_limit"] is True


# --- the worker's own PID namespace ----------------------------------------------------------


@pytest.fixture
def bystander() -> Iterator[int]:
    """A sleeping process of the host's: nothing in a worker may name it."""
    import subprocess

    process = subprocess.Popen(["sleep", "600"])  # noqa: S607 - a bystander; PATH is the test's own
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_worker_cannot_signal_or_open_a_process_outside_its_pid_namespace(hostile: Path, bystander: int) -> None:
    _succeeded(run_attack("signal_process", {"pid": bystander}, mode="none", ext_dir=hostile))
    _succeeded(run_attack("pidfd_process", {"pid": bystander}, mode="none", ext_dir=hostile))
    # The PID namespace alone: the number names no process there at all.
    _blocked(run_attack("signal_process", {"pid": bystander}, mode="namespaces", ext_dir=hostile), "ESRCH")
    _blocked(run_attack("pidfd_process", {"pid": bystander}, mode="namespaces", ext_dir=hostile), "ESRCH")
    # The worker's confinement: seccomp refuses both before the namespace is even asked.
    _blocked(run_attack("signal_process", {"pid": bystander}, mode="full", ext_dir=hostile), "EPERM")
    _blocked(run_attack("pidfd_process", {"pid": bystander}, mode="full", ext_dir=hostile), "EPERM")
    os.kill(bystander, 0)  # still there: the refusals were not because it was gone


def test_worker_is_pid_one_and_cannot_see_its_parent(hostile: Path) -> None:
    outside = _succeeded(run_attack("own_pids", mode="none", ext_dir=hostile))
    assert outside["pid"] != 1
    assert outside["ppid"] == os.getpid()  # the harness child sees the test process
    for mode in ("namespaces", "full"):
        inside = _succeeded(run_attack("own_pids", mode=mode, ext_dir=hostile))
        assert (inside["pid"], inside["ppid"]) == (1, 0), mode


def test_parent_witness_catches_a_parent_that_died_before_pdeathsig_was_set() -> None:
    """pid 1 of a PID namespace sees its parent as 0, so `getppid` cannot tell whether the parent
    changed; the pipe whose only write end the parent holds can. Here the parent is gone (its
    end closed) before the child sets PDEATHSIG: the child must exit, not serve."""
    for parent_alive in (True, False):
        witness_r, witness_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(witness_w)  # only the parent (the test) holds it now
                hygiene.die_with_parent(0, witness_r)
            finally:
                os._exit(0)
        if not parent_alive:
            os.close(witness_w)
        _, status = os.waitpid(pid, 0)
        if parent_alive:
            os.close(witness_w)
        os.close(witness_r)
        assert os.WIFEXITED(status)
        assert os.WEXITSTATUS(status) == (0 if parent_alive else hygiene.EXIT_ORPHANED), parent_alive
