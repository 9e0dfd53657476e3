"""Attacks by a hostile extension author on the proc worker's confinement and on the host.

Each attack runs the way an extension would: in a forked child confined by `confine_worker`
(or through the real host), and where the attack depends on a layer the machine might lack,
with that layer removed, so the test shows which rule stops it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kumix.extensions.proc import landlock_rules, privileges
from kumix.extensions.proc.confinement import ConfinementSpec, confine_worker
from kumix.extensions.proc.seccomp_filter import F_SETOWN_EX, FIOSETOWN, SIOCSPGRP

# --- signals through fd ownership ------------------------------------------------------------


def _confine_without_signal_scope(ext_dir: Path) -> None:
    """Every layer as a worker gets it, on a kernel whose Landlock has no scopes (ABI < 6,
    Linux < 6.12): the filesystem and TCP rules apply, signals are not scoped."""
    original = landlock_rules.landlock.Ruleset

    def without_scope(*args: object, **kwargs: object) -> object:
        kwargs.pop("scoped", None)
        return original(*args, **kwargs)

    landlock_rules.landlock.Ruleset = without_scope  # type: ignore[misc]  # forked child only
    report = confine_worker(ConfinementSpec(extension_dir=ext_dir, scratch_dir=None, required=True))
    assert report.confined, report.problems
    assert report.details["landlock_scoped"] is False


def _uid_switch_only(_ext_dir: Path) -> None:
    privileges.switch_to_unprivileged(privileges.NOBODY_ID, privileges.NOBODY_ID)


def _own_pipe_owner(victim: int) -> None:
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETOWN, victim)
    fcntl.fcntl(r, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
    os.write(w, b"x")


def _own_pipe_owner_ex(victim: int) -> None:
    r, w = os.pipe()
    fcntl.fcntl(r, F_SETOWN_EX, struct.pack("ii", 1, victim))  # F_OWNER_PID
    fcntl.fcntl(r, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
    os.write(w, b"x")


def _socket_owner(command: int) -> Callable[[int], None]:
    def attack(victim: int) -> None:
        a, b = socket.socketpair()  # the one socket kind a worker may still make
        fcntl.ioctl(a, command, struct.pack("i", victim))
        fcntl.fcntl(a, fcntl.F_SETSIG, signal.SIGKILL)
        fcntl.fcntl(a, fcntl.F_SETFL, fcntl.fcntl(a, fcntl.F_GETFL) | os.O_ASYNC)
        b.send(b"x")

    return attack


def _sibling_signal(confine: Callable[[Path], None], attack: Callable[[int], None], ext_dir: Path) -> tuple[str, str]:
    """Two sibling 'workers' confined alike; the attacker tries to SIGKILL the victim.
    Returns (what the attacker saw, how the victim ended)."""
    hold_read, hold_write = os.pipe()
    victim = os.fork()
    if victim == 0:
        try:
            os.close(hold_write)
            os.setsid()
            confine(ext_dir)
            os.read(hold_read, 1)  # until the parent lets go, after the attack
        finally:
            os._exit(0)
    os.close(hold_read)
    read_end, write_end = os.pipe()
    attacker = os.fork()
    if attacker == 0:
        try:
            os.close(read_end)
            os.setsid()
            confine(ext_dir)
            try:
                attack(victim)
                seen = "done"
            except OSError as exc:
                seen = f"refused {exc.errno}"
            os.write(write_end, seen.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        seen = os.read(read_end, 100).decode()
        os.waitpid(attacker, 0)
        time.sleep(0.05)  # a signal the attack queued has been delivered by now
        os.close(hold_write)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            pid, status = os.waitpid(victim, os.WNOHANG)
            if pid:
                break
            time.sleep(0.01)
        else:
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
            return seen, "alive"
    finally:
        os.close(read_end)
    return seen, f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"


ATTACKS = {
    "F_SETOWN": _own_pipe_owner,
    "F_SETOWN_EX": _own_pipe_owner_ex,
    "FIOSETOWN": _socket_owner(FIOSETOWN),
    "SIOCSPGRP": _socket_owner(SIOCSPGRP),
}


def test_fd_owner_signal_kills_a_same_uid_sibling_without_the_filter(tmp_path: Path) -> None:
    """The attack is real: two processes of uid 65534 with no filter, one kills the other."""
    seen, victim = _sibling_signal(_uid_switch_only, _own_pipe_owner, tmp_path)
    assert (seen, victim) == ("done", f"signal {signal.SIGKILL}")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_fd_owner_signal_cannot_reach_a_sibling_without_landlock_scopes(tmp_path: Path, name: str) -> None:
    """seccomp promises that signals leave a worker for nobody but itself, also on kernels
    whose Landlock has no signal scope; an fd owner plus F_SETSIG is a signal too."""
    seen, victim = _sibling_signal(_confine_without_signal_scope, ATTACKS[name], tmp_path)
    assert seen == "refused 1"
    assert victim == "exit 0"


# --- the host's HTML sanitizer under hostile input --------------------------------------------

COSTLY_HTML = {
    # Each is well below the strict policy's 4 MiB maxOutputBytes.
    "unclosed divs": "'<div>' * 400_000",
    "nested lists": "'<li><ul>' * 200_000",
    "closing tags": "'<b></i>' * 250_000 + '<div>' * 100_000",
    "one tag, many attributes": "'<a ' + ' '.join(f'h{i}=1' for i in range(300_000)) + '>x'",
}
_SANITIZE_CHILD = """
import sys, time
from kumix.extensions.proc.results import check_result
hostile = eval(sys.argv[1]) + '<script>alert(1)</script><img src=x onerror=alert(1)>'
started = time.perf_counter()
cleaned = check_result('render.markdown', {'html': hostile})['html']
print(time.perf_counter() - started)
print('<script' in cleaned or '<img' in cleaned or '<div' in cleaned)
"""


@pytest.mark.parametrize("name", sorted(COSTLY_HTML))
def test_a_hostile_html_result_cannot_hold_the_host_event_loop(name: str) -> None:
    """The host sanitizes every `html` of a result on its event loop; a result built to make
    the HTML parser quadratic must still be answered at once, and stay inert. (In a child
    process: without the bound, one of these runs for many minutes.)"""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SANITIZE_CHILD, COSTLY_HTML[name]],
            capture_output=True, text=True, timeout=15, check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("sanitizing did not finish within 15 s")
    elapsed, active = done.stdout.split()
    assert float(elapsed) < 1.0, f"sanitizing took {float(elapsed):.1f} s"
    assert active == "False"


def test_ordinary_html_is_still_sanitized_not_escaped() -> None:
    from kumix.extensions.sanitize import sanitize_html

    table = "<table>" + "<tr><td>cell</td></tr>" * 1_000 + "</table>"
    cleaned = sanitize_html('<p><b>hi</b><script>x</script></p>' + table)
    assert cleaned.startswith("<p><b>hi</b></p><table>")
    assert cleaned.count("<td>") == 1_000
