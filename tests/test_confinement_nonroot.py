"""The second attack pass for a host that is not root — the common install.

Run as root (as the suite is here), the test creates an unprivileged system user for itself
(`kumix-test-host`, kept between runs) and runs tests/fixtures/confinement/as_user.py as that
user: the same harness, the same hostile extension, a private directory of that user's with a
file, a `user.*` xattr and a symlink, another process of that user, a SysV queue of that user.

The project's interpreter lives under /root (0700), which another uid cannot enter. The closest
real equivalent of "a user with a Python of their own" is built without copying 1 GB: a private
mount namespace in which /root is an empty 0755 tmpfs holding only the interpreter's prefix
(bind-mounted at its own path), so the user runs the very interpreter and virtualenv of the
suite, with no privilege: setpriv switches uid, gid and groups and clears the inheritable
capabilities before exec, exactly the state of a login shell. Run as a non-root user already,
the test runs the script directly.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.confinement_harness import FIXTURES
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

TEST_USER = "kumix-test-host"
RUN_TIMEOUT_S = 300


def _test_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", TEST_USER], check=True, capture_output=True)
        return pwd.getpwnam(TEST_USER)


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


def _blocking_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of `path` another uid cannot enter (such as /root), if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            return parent
    return None


@pytest.fixture(scope="module")
def as_user() -> Iterator[dict[str, Any]]:
    base = Path(tempfile.mkdtemp(prefix="kumix-nonroot-", dir="/tmp"))  # noqa: S108
    try:
        root_host = os.geteuid() == 0
        user = _test_user() if root_host else pwd.getpwuid(os.geteuid())
        os.chmod(base, 0o755)  # noqa: S103
        ext = base / "extensions" / "hostile"
        shutil.copytree(FIXTURES / "hostile", ext)
        private = base / "home" / "private"
        private.mkdir(parents=True, mode=0o700)
        (private / "notes.txt").write_text("x" * 1234)
        os.setxattr(private / "notes.txt", "user.tag", b"private-tag")
        (private / "link").symlink_to("/home/someone/.ssh/id_ed25519")
        scratch = base / "data" / "scratch" / "hostile"
        sibling = base / "data" / "scratch" / "bystander"
        for d in (scratch, sibling):
            d.mkdir(parents=True, mode=0o700)
        shutil.copytree(FIXTURES / "bystander", base / "extensions" / "bystander")
        (base / "cli").mkdir()
        if root_host:
            for path in [base, *base.rglob("*")]:
                os.lchown(path, user.pw_uid, user.pw_gid)
        config = {"repo": str(REPO_ROOT), "ext_dir": str(ext), "private_dir": str(private),
                  "scratch": str(scratch), "sibling_scratch": str(sibling), "cli_dir": str(base / "cli"),
                  "ext_root": str(base / "extensions")}
        script = str(FIXTURES / "as_user.py")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(base / "home")}
        command = [sys.executable, "-I", script, json.dumps(config)]
        if root_host:
            prefix = Path(sys.base_prefix).resolve()
            blocker = _blocking_ancestor(prefix)
            shell = ["set -e", "mount --make-rprivate /"]
            if blocker is not None:
                holder = base / "runtime"
                holder.mkdir()
                shell += [f"mount --bind {prefix} {holder}", f"mount -t tmpfs -o mode=0755 tmpfs {blocker}",
                          f"mkdir -p {prefix}", f"mount --move {holder} {prefix}"]
            assert _traversable_by_others(Path(REPO_ROOT)), "the repository must be readable by the test user"
            shell.append(f"exec setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups "
                         "--inh-caps=-all -- \"$@\"")
            command = ["unshare", "--mount", "--", "/bin/sh", "-c", "\n".join(shell), "sh", *command]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        assert done.returncode == 0, done.stderr[-4000:]
        doc = json.loads(done.stdout.strip().splitlines()[-1])
        doc["expected_uid"] = user.pw_uid
        yield doc
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _blocked(doc: dict[str, Any], errno_name: str) -> None:
    assert doc["outcome"] == "blocked", doc
    assert doc["errno"] == errno_name, doc


def _succeeded(doc: dict[str, Any]) -> dict[str, Any]:
    assert doc["outcome"] == "succeeded", doc
    return doc


def test_runs_as_the_unprivileged_user_with_every_layer(as_user: dict[str, Any]) -> None:
    assert as_user["uid"] == as_user["expected_uid"] != 0
    identity = _succeeded(as_user["identity_full"])
    assert identity["uid"] == as_user["expected_uid"]
    report = identity["report"]
    assert all(report["layers"].values()), report
    assert sorted(report["details"]["namespaces"]) == ["ipc", "mount", "net", "pid", "user"]
    assert report["details"]["task_limit_scope"] == "worker"
    assert report["details"]["parent_death_checked_after"] == ["pid namespace", "namespaces", "capability drop"]


def test_the_users_own_private_files_names_and_xattrs_are_out_of_reach(as_user: dict[str, Any]) -> None:
    """The finding for non-root hosts: the worker has the user's uid, so only Landlock stood
    between it and the home directory, and Landlock does not govern stat, readlink or xattrs."""
    assert "xxxx" in _succeeded(as_user["read_file_none"])["text"]
    _blocked(as_user["read_file_landlock"], "EACCES")
    assert _succeeded(as_user["stat_landlock"])["size"] == 1234
    assert _succeeded(as_user["readlink_landlock"])["target"] == "/home/someone/.ssh/id_ed25519"
    assert _succeeded(as_user["xattr_landlock"])["value"] == "private-tag"
    for name in ("read_file", "stat", "readlink"):
        _succeeded(as_user[f"{name}_none"])
        _blocked(as_user[f"{name}_full"], "ENOENT")
        _blocked(as_user[f"{name}_namespaces"], "ENOENT")
    _succeeded(as_user["xattr_none"])
    _blocked(as_user["xattr_full"], "ENOTSUP")
    _blocked(as_user["xattr_namespaces"], "ENOENT")


def test_other_processes_and_ipc_of_the_user_are_out_of_reach(as_user: dict[str, Any]) -> None:
    _succeeded(as_user["signal_none"])
    _blocked(as_user["signal_full"], "EPERM")
    _succeeded(as_user["sysv_none"])
    _blocked(as_user["sysv_full"], "EPERM")
    _blocked(as_user["sysv_namespaces"], "ENOENT")


def test_thread_limit_and_unknown_syscalls_hold_for_a_non_root_host(as_user: dict[str, Any]) -> None:
    assert _succeeded(as_user["threads_none"])["threads"] == 2049
    _blocked(as_user["threads_full"], "EAGAIN")
    # Without its own user namespace the worker shares the user's process count; the runtime's
    # thread limit stands in (the weaker mode, docs/confinement.md).
    _blocked(as_user["threads_weaker"], "EAGAIN")
    assert as_user["threads_weaker"]["report"]["details"]["task_limit_scope"] == "runtime"
    assert _succeeded(as_user["listmount_none"])["mounts"] > 1
    _blocked(as_user["listmount_full"], "ENOSYS")


def test_sibling_extensions_scratch_directory_needs_the_namespaces(as_user: dict[str, Any]) -> None:
    """Every extension of a non-root host has the user's uid: only the view separates them. The
    weaker mode (no namespaces) cannot, and docs/confinement.md says so."""
    _succeeded(as_user["sibling_none"])
    _succeeded(as_user["sibling_weaker"])
    _blocked(as_user["sibling_full"], "ENOENT")


def test_worker_dies_with_its_fork_server_on_a_non_root_host(as_user: dict[str, Any]) -> None:
    assert as_user["orphan"] == ""


def test_the_real_host_run_by_the_user_confines_its_workers(as_user: dict[str, Any]) -> None:
    """`kumix ext call` as the unprivileged user: fork server and worker under that uid."""
    cli = as_user["cli"]
    assert "started, confined" in cli["log"], cli
    assert cli["identity"]["uid"] == as_user["expected_uid"], cli
    _blocked(cli["read_file"], "ENOENT")
    _blocked(cli["many_threads"], "EAGAIN")
    doctor = cli["doctor"]
    assert doctor["verdict"] == "confined", doctor
    assert doctor["host_uid"] == as_user["expected_uid"]
    assert all(doctor["layers"].values()), doctor["layers"]
    assert doctor["checks"]["read_etc"] == "ENOENT"
