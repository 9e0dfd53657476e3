"""Attacks on a confined proc worker, one layer at a time and all together.

Each attack runs in a forked child (tests/confinement_harness.py) in several modes: `none`
shows that the attack works on this machine at all (the tests run as root, so a refusal there
would prove nothing), `full` is `confine_worker` exactly as the worker calls it, and the
single-layer modes show which mechanism stops the attack (Landlock while still root proves it
is not file permissions; seccomp alone proves it is the filter). Assertions name the errno,
so an attack stopped by accident (a missing file, a typo) does not pass for a defence.

The same hostile extension is driven through the real host in test_confinement_host.py.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from kumix.core.errors import ConfinementUnavailable
from kumix.extensions.proc import confinement, machine_probe, privileges
from kumix.extensions.proc.confinement import SIMULATE_ENV, ConfinementSpec, confine_worker
from kumix.store.database import Database
from tests.confinement_harness import FIXTURES, run_attack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

SECRET = "matrix-access-token-syt_ZmFrZQ_do-not-leak"


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A copy of the hostile extension under tmp_path (root-only 0700 parents, like a real
    data layout), so writes in unconfined runs never touch the repository."""
    ext = tmp_path / "extensions" / "hostile"
    shutil.copytree(FIXTURES / "hostile", ext)
    return ext


@pytest.fixture
def host_data(tmp_path: Path) -> Path:
    """The host's data directory: the real SQLite state DB and a 0600 credentials file."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    with Database(data / "state.db") as db, db.transaction() as tx:
        tx.execute("CREATE TABLE IF NOT EXISTS secrets (value TEXT)")
        tx.execute("INSERT INTO secrets VALUES (?)", (SECRET,))
    creds = data / "credentials.json"
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'{{"access_token": "{SECRET}"}}')
    return data


def _blocked(result, errno_name: str) -> None:  # type: ignore[no-untyped-def]
    assert result.answer is not None, f"child died without answering (status {result.status})"
    assert result.outcome == "blocked", result.answer
    assert result.errno == errno_name, result.answer


def _succeeded(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.answer is not None, f"child died without answering (status {result.status})"
    assert result.outcome == "succeeded", result.answer
    return result.answer


# --- the layers themselves -------------------------------------------------------------------


def test_confined_worker_has_every_layer_and_no_capability_left(hostile: Path) -> None:
    result = run_attack("identity", mode="full", ext_dir=hostile)
    answer = _succeeded(result)
    report = result.report
    assert report is not None
    assert report["confined"] is True
    assert report["layers"] == {"no_new_privs": True, "unprivileged": True, "namespaces": True,
                                "task_limit": True, "landlock": True, "seccomp": True}
    assert sorted(report["details"]["namespaces"]) == ["ipc", "mount", "net", "pid", "user"]
    assert report["details"]["task_limit_scope"] == "worker"
    # The parent-death signal was set again after each identity and namespace change.
    assert report["details"]["parent_death_checked_after"] == [
        "pid namespace", "namespaces", "uid switch", "user namespace"
    ]
    # The kernel's own view (/proc/self/status, read after every layer was applied).
    assert set(report["details"]["capabilities"].values()) == {"0" * 16}
    assert report["details"]["landlock_tcp"] is True
    assert report["details"]["landlock_scoped"] is True
    # The extension's own uid and gid, not nobody's (which every extension used to share).
    own = privileges.extension_identity("hostile")
    assert answer["uid"] == answer["euid"] == own
    assert answer["gid"] == own
    assert answer["groups"] == []


def test_confined_worker_cannot_become_root_again(hostile: Path) -> None:
    assert _succeeded(run_attack("become_root", mode="none", ext_dir=hostile))["uid"] == 0
    _blocked(run_attack("become_root", mode="full", ext_dir=hostile), "EPERM")


@pytest.mark.parametrize("mode", ["full", "weaker"])
def test_runtime_imports_still_work_confined(hostile: Path, mode: str) -> None:
    """As the extension's uid the interpreter under /root (0700) is unreachable by path; the
    worker still imports stdlib C extensions and pure modules it had not loaded, and the bundled
    extensions' libraries: in its own view by their real paths (the directories around them are
    the view's own 0755 tmpfs directories), and without namespaces through the descriptors kept
    across the uid switch."""
    not_loaded = [m for m in ("colorsys", "wave", "_lzma", "_bz2", "fractions") if m not in sys.modules]
    assert not_loaded, "pick modules the test process has not imported"
    (hostile / "attacks.py").write_text(
        (hostile / "attacks.py").read_text()
        + "\n\ndef import_modules(params):\n"
        "    import importlib\n"
        "    return {'files': {n: importlib.import_module(n).__file__ for n in params['names']}}\n"
        "ATTACKS['import_modules'] = import_modules\n"
    )
    result = run_attack("import_modules", {"names": [*not_loaded, "markdown_it", "linkify_it"]},
                        mode=mode, ext_dir=hostile)
    files = _succeeded(result)["files"]
    assert set(files) == {*not_loaded, "markdown_it", "linkify_it"}
    if mode == "weaker":
        # Pure-python and C stdlib modules came in through /proc/self/fd/N (the traversal fd).
        assert all(files[name].startswith("/proc/self/fd/") for name in not_loaded), files
    else:
        expected = {name: getattr(importlib.util.find_spec(name), "origin", None) for name in not_loaded}
        assert all(files[name] == expected[name] for name in not_loaded), files


def test_landlock_alone_stops_root_reading_outside_the_read_set(hostile: Path, host_data: Path) -> None:
    """Still uid 0 with every capability: only Landlock can be what refuses."""
    target = str(host_data / "credentials.json")
    assert SECRET in _succeeded(run_attack("read_file", {"path": target}, mode="none", ext_dir=hostile))["text"]
    _blocked(run_attack("read_file", {"path": target}, mode="landlock", ext_dir=hostile), "EACCES")


# --- network ---------------------------------------------------------------------------------


def test_tcp_connect_is_refused(hostile: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        params = {"host": "127.0.0.1", "port": listener.getsockname()[1]}
        _succeeded(run_attack("tcp_connect", params, mode="none", ext_dir=hostile))
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(64) == b"exfiltrated"
        _blocked(run_attack("tcp_connect", params, mode="full", ext_dir=hostile), "EPERM")
        _blocked(run_attack("tcp_connect", params, mode="seccomp", ext_dir=hostile), "EPERM")
        # Defence in depth: Landlock (ABI >= 4) alone lets the socket be made but not connected.
        _blocked(run_attack("tcp_connect", params, mode="landlock", ext_dir=hostile), "EACCES")


def test_unix_socket_connect_is_refused(hostile: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "host.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(4)
        _succeeded(run_attack("unix_connect", {"path": path}, mode="none", ext_dir=hostile))
        _blocked(run_attack("unix_connect", {"path": path}, mode="full", ext_dir=hostile), "EPERM")
        _blocked(run_attack("unix_connect", {"path": path}, mode="seccomp", ext_dir=hostile), "EPERM")


def test_socketpair_stays_available_for_the_event_loop(hostile: Path) -> None:
    """asyncio's self-pipe is a socketpair(AF_UNIX): two connected ends, nothing to reach."""
    assert _succeeded(run_attack("unix_socketpair", mode="full", ext_dir=hostile))["echo"] == "x"


def test_dns_resolution_fails(hostile: Path) -> None:
    assert "127.0.0.1" in _succeeded(run_attack("resolve_dns", {"name": "localhost"}, mode="none",
                                                ext_dir=hostile))["addresses"]
    result = run_attack("resolve_dns", {"name": "localhost"}, mode="full", ext_dir=hostile)
    assert result.outcome == "blocked"
    assert result.answer is not None
    assert result.answer["error"] == "gaierror"


# --- processes -------------------------------------------------------------------------------


def test_fork_is_refused(hostile: Path) -> None:
    _succeeded(run_attack("fork", mode="none", ext_dir=hostile))
    _blocked(run_attack("fork", mode="full", ext_dir=hostile), "EPERM")
    _blocked(run_attack("fork", mode="seccomp", ext_dir=hostile), "EPERM")


def test_subprocess_sh_is_refused(hostile: Path) -> None:
    assert _succeeded(run_attack("subprocess_sh", mode="none", ext_dir=hostile))["stdout"] == "pwned\n"
    _blocked(run_attack("subprocess_sh", mode="full", ext_dir=hostile), "EPERM")


def test_os_system_never_starts_a_shell(hostile: Path) -> None:
    assert _succeeded(run_attack("os_system", mode="none", ext_dir=hostile))["exit_code"] == 7
    # glibc's system() reports "the shell could not be run" as exit status 127.
    assert _succeeded(run_attack("os_system", mode="full", ext_dir=hostile))["exit_code"] in (127, -1)


def test_execv_is_refused(hostile: Path) -> None:
    replaced = run_attack("execv_sh", mode="none", ext_dir=hostile)
    assert replaced.answer is None
    assert replaced.exit_code == 0
    _blocked(run_attack("execv_sh", mode="full", ext_dir=hostile), "EPERM")
    _blocked(run_attack("execv_sh", mode="seccomp", ext_dir=hostile), "EPERM")


def test_user_namespace_is_refused(hostile: Path) -> None:
    _succeeded(run_attack("unshare_user_namespace", mode="none", ext_dir=hostile))
    _blocked(run_attack("unshare_user_namespace", mode="full", ext_dir=hostile), "EPERM")


# --- the host's data and processes -----------------------------------------------------------


@pytest.mark.parametrize(("name", "marker"), [("state.db", "SQLite format 3"), ("credentials.json", SECRET)])
def test_host_data_directory_is_unreadable(hostile: Path, host_data: Path, name: str, marker: str) -> None:
    target = {"path": str(host_data / name)}
    assert marker in _succeeded(run_attack("read_file", target, mode="none", ext_dir=hostile))["text"]
    # In its own view the data directory does not exist; without the view Landlock refuses.
    _blocked(run_attack("read_file", target, mode="full", ext_dir=hostile), "ENOENT")
    _blocked(run_attack("read_file", target, mode="weaker", ext_dir=hostile), "EACCES")
    _blocked(run_attack("read_file", target, mode="namespaces", ext_dir=hostile), "ENOENT")
    _blocked(run_attack("read_file", target, mode="landlock", ext_dir=hostile), "EACCES")
    _blocked(run_attack("read_file", target, mode="unprivileged", ext_dir=hostile), "EACCES")
    _blocked(run_attack("list_dir", {"path": str(host_data)}, mode="full", ext_dir=hostile), "ENOENT")
    _blocked(run_attack("list_dir", {"path": str(host_data)}, mode="weaker", ext_dir=hostile), "EACCES")


def test_host_environ_is_unreadable(hostile: Path) -> None:
    target = {"path": f"/proc/{os.getpid()}/environ"}
    assert "PATH=" in _succeeded(run_attack("read_file", target, mode="none", ext_dir=hostile))["text"]
    _blocked(run_attack("read_file", target, mode="full", ext_dir=hostile), "ENOENT")
    _blocked(run_attack("read_file", target, mode="weaker", ext_dir=hostile), "EACCES")
    _blocked(run_attack("read_file", target, mode="landlock", ext_dir=hostile), "EACCES")


def test_host_memory_is_unreadable(hostile: Path) -> None:
    params = {"pid": os.getpid()}
    assert _succeeded(run_attack("read_memory", params, mode="none", ext_dir=hostile))["bytes"] == 16
    _blocked(run_attack("read_memory", params, mode="full", ext_dir=hostile), "ENOENT")
    _blocked(run_attack("read_memory", params, mode="weaker", ext_dir=hostile), "EACCES")
    _blocked(run_attack("read_memory", params, mode="landlock", ext_dir=hostile), "EACCES")
    buffer = ctypes.create_string_buffer(b"host secret bytes")
    vm = {"pid": os.getpid(), "address": ctypes.addressof(buffer)}
    assert _succeeded(run_attack("process_vm_readv", vm, mode="none", ext_dir=hostile))["bytes"] == 16
    _blocked(run_attack("process_vm_readv", vm, mode="full", ext_dir=hostile), "EPERM")
    _blocked(run_attack("process_vm_readv", vm, mode="seccomp", ext_dir=hostile), "EPERM")


def test_host_cannot_be_signalled(hostile: Path) -> None:
    params = {"pid": os.getpid()}
    _succeeded(run_attack("signal_process", params, mode="none", ext_dir=hostile))
    _blocked(run_attack("signal_process", params, mode="full", ext_dir=hostile), "EPERM")
    # Still root, so only Landlock's signal scope (ABI >= 6) can be what refuses.
    _blocked(run_attack("signal_process", params, mode="landlock", ext_dir=hostile), "EPERM")
    # And the seccomp rule alone, which also holds for a non-root host on older kernels;
    # kill(-1) would reach every process the worker's uid may signal.
    _blocked(run_attack("signal_process", params, mode="seccomp", ext_dir=hostile), "EPERM")
    _blocked(run_attack("signal_process", {"pid": -1}, mode="seccomp", ext_dir=hostile), "EPERM")
    # Signalling itself stays possible (libc and the runtime rely on it).
    _succeeded(run_attack("signal_process", {"pid": "self"}, mode="full", ext_dir=hostile))


def test_traversal_fds_do_not_open_the_directories_around_the_runtime(hostile: Path) -> None:
    """The descriptor kept for the interpreter under /root reaches what it names, and `..` from
    it leads into directories Landlock never granted."""
    report = run_attack("identity", mode="weaker", ext_dir=hostile).report
    assert report is not None
    names = report["details"]["traversal_fds"]
    assert names, "expected the runtime under /root to need a traversal fd"
    for original, reachable in names.items():
        assert _succeeded(run_attack("list_dir", {"path": reachable}, mode="weaker", ext_dir=hostile))["entries"]
        assert sorted(os.listdir(original)) == sorted(
            _succeeded(run_attack("list_dir", {"path": reachable}, mode="weaker", ext_dir=hostile))["entries"])
        _blocked(run_attack("list_dir", {"path": reachable + "/.."}, mode="weaker", ext_dir=hostile), "EACCES")
    # With namespaces the worker needs no descriptor at all: the runtime has its own path.
    full = run_attack("identity", mode="full", ext_dir=hostile).report
    assert full is not None
    assert "traversal_fds" not in full["details"]


# --- writes ----------------------------------------------------------------------------------


def test_extension_directory_is_read_only(hostile: Path) -> None:
    target = {"path": str(hostile / "planted.py")}
    _succeeded(run_attack("write_file", target, mode="none", ext_dir=hostile))
    (hostile / "planted.py").unlink()
    # A read-only bind mount in the worker's view, and Landlock's refusal beneath it.
    _blocked(run_attack("write_file", target, mode="full", ext_dir=hostile), "EROFS")
    _blocked(run_attack("write_file", target, mode="namespaces", ext_dir=hostile), "EROFS")
    _blocked(run_attack("write_file", target, mode="weaker", ext_dir=hostile), "EACCES")
    _blocked(run_attack("write_file", target, mode="landlock", ext_dir=hostile), "EACCES")
    assert not (hostile / "planted.py").exists()


def test_tmp_is_not_writable(hostile: Path) -> None:
    path = Path("/tmp") / f"kumix-attack-{os.getpid()}"  # noqa: S108
    try:
        _succeeded(run_attack("write_file", {"path": str(path)}, mode="none", ext_dir=hostile))
        path.unlink()
        # /tmp in the view is a directory of the read-only root (the fixture lies under /tmp).
        _blocked(run_attack("write_file", {"path": str(path)}, mode="full", ext_dir=hostile), "EROFS")
        _blocked(run_attack("write_file", {"path": str(path)}, mode="weaker", ext_dir=hostile), "EACCES")
        _blocked(run_attack("write_file", {"path": str(path)}, mode="landlock", ext_dir=hostile), "EACCES")
        assert not path.exists()
    finally:
        path.unlink(missing_ok=True)


def test_scratch_directory_is_writable_and_nothing_else(hostile: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "data" / "scratch" / "hostile"
    scratch.mkdir(parents=True, mode=0o700)
    result = run_attack("write_file", {"path": "{scratch}/note.txt", "size": 5}, mode="full",
                        ext_dir=hostile, scratch=scratch)
    assert _succeeded(result)["written"] == 5
    assert (scratch / "note.txt").read_bytes() == b"xxxxx"
    assert result.report is not None
    assert result.report["details"]["write_paths"] == [str(scratch.resolve())]
    # The scratch grant is exactly that directory: its parent stays closed, to Landlock itself
    # (still root in this mode, so file permissions cannot be what refuses).
    _blocked(run_attack("write_file", {"path": str(scratch.parent / "other.txt")}, mode="landlock",
                        ext_dir=hostile, scratch=scratch), "EACCES")
    assert not (scratch.parent / "other.txt").exists()


def test_filling_the_disk_stops_at_the_file_size_limit(hostile: Path, tmp_path: Path) -> None:
    import resource

    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    params = {"path": "{scratch}/fill.bin", "max_mb": 8}
    unlimited = run_attack("fill_disk", params, mode="none", ext_dir=hostile, scratch=scratch)
    assert _succeeded(unlimited)["written"] == 8 << 20
    (scratch / "fill.bin").unlink()
    limits = {resource.RLIMIT_FSIZE: 2 << 20}
    _blocked(run_attack("fill_disk", params, mode="full", ext_dir=hostile, scratch=scratch, rlimits=limits), "EFBIG")
    assert (scratch / "fill.bin").stat().st_size == 2 << 20


def test_symlink_planted_in_the_extension_directory_does_not_escape(hostile: Path, host_data: Path) -> None:
    """The link is made after the extension was discovered, pointing at the credentials."""
    link = hostile / "innocent.txt"
    link.symlink_to(host_data / "credentials.json")
    target = {"path": str(link)}
    assert SECRET in _succeeded(run_attack("read_file", target, mode="none", ext_dir=hostile))["text"]
    # The link's target is not in the worker's view; without the view Landlock refuses it.
    _blocked(run_attack("read_file", target, mode="full", ext_dir=hostile), "ENOENT")
    _blocked(run_attack("read_file", target, mode="weaker", ext_dir=hostile), "EACCES")
    _blocked(run_attack("read_file", target, mode="landlock", ext_dir=hostile), "EACCES")


# --- required vs. simulated unavailability ---------------------------------------------------


def _in_child(fn) -> dict:  # type: ignore[no-untyped-def]
    """Run fn() in a forked child (confinement is irreversible) and return what it returned."""
    import json

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(fn()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _root_listable() -> bool:
    try:
        os.listdir("/")
    except PermissionError:
        return False
    return True


@pytest.mark.parametrize("layer", list(confinement.LAYERS))
def test_required_confinement_refuses_when_a_layer_is_unavailable(hostile: Path, layer: str) -> None:
    def attempt() -> dict:
        try:
            confine_worker(ConfinementSpec(hostile, None, required=True, simulate_unavailable=frozenset({layer})))
        except ConfinementUnavailable as exc:
            # Refused before anything was applied: still root and not yet confined.
            return {"code": exc.code, "message": exc.message, "layer": exc.details["layer"],
                    "uid": os.geteuid(), "root_listable": _root_listable()}
        return {"code": None}

    answer = _in_child(attempt)
    assert answer["code"] == "confinement_unavailable"
    assert answer["layer"] == layer
    assert layer in answer["message"]
    assert answer["uid"] == 0
    assert answer["root_listable"] is True


def test_environment_variable_simulation_cannot_turn_a_refusal_into_an_unconfined_start(
    hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIMULATE_ENV, "seccomp")

    def attempt() -> dict:
        try:
            confine_worker(ConfinementSpec(hostile, None, required=True))
        except ConfinementUnavailable as exc:
            return {"code": exc.code, "layer": exc.details["layer"]}
        return {"code": None}

    assert _in_child(attempt) == {"code": "confinement_unavailable", "layer": "seccomp"}


def test_unrequired_confinement_reports_the_missing_layer_and_applies_the_rest(
    hostile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIMULATE_ENV, "landlock")

    def attempt() -> dict:
        report = confine_worker(ConfinementSpec(hostile, None, required=False))
        try:
            socket.socket().close()
            sock = "ALLOWED"
        except PermissionError:
            sock = "EPERM"
        return {"layers": report.layers, "warning": report.warning(), "root_listable": _root_listable(),
                "socket": sock, "uid": os.geteuid()}

    answer = _in_child(attempt)
    assert answer["layers"] == {"no_new_privs": True, "unprivileged": True, "namespaces": True,
                                "task_limit": True, "landlock": False, "seccomp": True}
    assert "landlock" in answer["warning"]
    assert SIMULATE_ENV in answer["warning"]
    assert answer["socket"] == "EPERM"
    assert answer["uid"] == 65534
    # The simulated layer really is off (that is the point of a simulation), the others are on.
    assert answer["root_listable"] is True


def test_probe_reports_active_layers_without_confining_the_caller() -> None:
    result = machine_probe.probe_machine()
    assert result.report.confined, result.report.problems
    # /etc/hostname is not in the probe's view at all, and /tmp is a directory of its read-only
    # root; SysV IPC is refused by name, listmount (unknown to the allowlist) as no such call.
    assert result.checks == {"socket": "EPERM", "fork": "EPERM", "read_etc": "ENOENT", "write_tmp": "EROFS",
                             "sysv_msgget": "EPERM", "listmount": "ENOSYS", "mounts_visible": "ENOENT"}
    # This process is untouched.
    assert _root_listable()
    assert os.geteuid() == 0
    socket.socket().close()
