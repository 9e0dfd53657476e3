"""The fork server: a single-threaded template process that forks proc workers.

Starting Python and importing markdown-it-py, msgspec and the runtime costs tens of
milliseconds; `fork()` from a process that already did costs about one. The host starts
this process once (`python -I -m kumix.extensions.proc.forkserver`), and it forks one child
per spawn request. It never runs extension code and never starts a thread, so a fork is
always safe — which is also why the asyncio host never forks itself.

Start-up comes in two phases, so the first worker of a new process does not wait for
modules it may never use: before saying ready the server imports only what every worker
needs to become one (the bootstrap, confinement, the wire, the SDK's request loop; not
asyncio, which the SDK imports on first use, and not jsonschema: a worker rebuilds the
manifest the host validated without the schema, `manifest_from_host`); then, whenever no
request is waiting, it imports one more of `PRELOAD_MODULES` (markdown-it-py, asyncio,
wasmtime …), and at the end collects and freezes its heap for copy-on-write. A spawn always
goes first, but it names the modules of that list its entry file imports (`WorkerSpec.preload`),
and the server imports those first, before the fork, so the worker and the spare beside it
inherit them; what a worker needs beyond them it imports itself, from the runtime files its
confinement lets it read (runtime_access.py).

Control channel (SOCK_SEQPACKET, one JSON object per message, host → server):
  {"op": "spawn", "token": N, "spec": {...}} with three fds attached (channel read end,
  channel write end, log file). Server → host: {"op": "ready", "pid"},
  {"op": "spawned", "token", "pid"}, {"op": "spawn_failed", "token", "message"},
  {"op": "exited", "pid", "status"} (a raw wait status, for the host to classify),
  {"op": "preloaded"} once every module of PRELOAD_MODULES is imported (for the figures).

The pid in "spawned" and "exited" is the process that runs the extension's code: with the
worker's PID namespace that is the forked child's own child (pid 1 inside, pid_namespace.py),
which the child reports on a pipe of its own (its "P" record); the child itself stays behind as
its supervisor. The host kills that pid and reads its /proc files. "spawned" waits for the
report (or for the pipe's EOF: without a PID namespace the child is the worker), and "exited"
carries the worker's own wait status (the "S" record), falling back to the child's. The "S"
record comes once the supervisor has reaped the worker, so "exited" goes out then, without
waiting for the supervisor's own exit: it is the last holder of the worker's mount, IPC and
network namespaces, whose teardown (and the SIGCHLD after it) the host's crashed call would
wait out. The supervisor is reaped when it is gone, as any child.

Lifetime: the server dies with the host (PDEATHSIG, checked against the expected parent pid
right after it is set) and every worker dies with the server, so SIGKILL of the host
leaves no process behind. When the host closes the control socket the server kills its
workers and exits.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from kumix.extensions.proc import hygiene
from kumix.extensions.proc.pid_namespace import RECORD, REPORT_PID, REPORT_STATUS
from kumix.extensions.proc.preload import PRELOAD_MODULES

MAX_CONTROL_MESSAGE_BYTES = 65_536
"""A spawn request is a manifest plus limits, a few KiB; anything bigger is refused."""
READY_GRACE_MS = 3
"""How long the server waits for a spawn right after saying ready before it preloads."""


def _preload_essentials() -> None:
    """What every worker needs before its entry file runs: imported before the server is ready."""
    # The worker bootstrap and its dependencies; importing them here is what makes a fork cheap.
    importlib.import_module("kumix.extensions.proc.worker")
    # The seccomp allowlist is the same for every worker: compiled once here, loaded as bytes.
    from kumix.extensions.proc import seccomp_filter

    seccomp_filter.precompile()
    # No collection yet (tens of ms with this many modules): freezing alone keeps the
    # objects a worker inherits out of its collector's way.
    gc.freeze()


def _warm_markdown() -> None:
    """linkify-it compiles its pretest pattern (~10 ms, the largest of those every text meets)
    through `re`'s cache on the first text it scans, so the first render in every worker paid
    for it; one render here leaves it compiled in the cache the workers inherit. The patterns
    of the links themselves (fuzzy links and e-mail: 60-90 ms more) are left to the first
    worker that meets one: no spawn should wait behind them. Library code only: the server
    never runs an extension's."""
    from markdown_it import MarkdownIt

    MarkdownIt("commonmark", {"linkify": True}).enable(["table", "strikethrough", "linkify"]).render(
        "| a |\n|---|\n| ~~b~~ |\n\nplain text"
    )


_WARM_UPS = {"markdown_it": _warm_markdown}
"""Run after a preloaded module is imported: work its first use would otherwise repeat in
each worker."""


def _refresh_read_set() -> None:
    """Compute the workers' runtime read set again if a module just imported mapped another
    shared library (runtime_access.python_runtime_paths): in the template once, so a forked
    worker finds it ready instead of resolving every path itself (10-17 ms of each start)."""
    from kumix.extensions.proc import runtime_access

    runtime_access.refresh_runtime_paths()


class _Preloader:
    """The rest of PRELOAD_MODULES, one module at a time between requests."""

    def __init__(self, names: Sequence[str]) -> None:
        self.pending = list(names)

    @property
    def done(self) -> bool:
        return not self.pending

    def step(self) -> None:
        self._import(self.pending.pop(0))
        _refresh_read_set()
        self._finish_if_done()

    def take(self, names: Sequence[str]) -> None:
        """Import now those of `names` still pending (a spawn's entry needs them): in the
        template once, not in each confined worker. Names not pending — already imported, or
        not in PRELOAD_MODULES at all — are ignored: the server imports only its own list."""
        wanted = [name for name in self.pending if name in names]
        for name in wanted:
            self.pending.remove(name)
            self._import(name)
        if wanted:
            self._finish_if_done()

    @staticmethod
    def _import(name: str) -> None:
        try:
            importlib.import_module(name)
            warm_up = _WARM_UPS.get(name)
            if warm_up is not None:
                warm_up()
        except Exception as exc:  # a worker that needs it reports the failure itself
            sys.stderr.write(f"kumix fork server: preloading {name} failed: {type(exc).__name__}: {exc}\n")

    def _finish_if_done(self) -> None:
        if not self.pending:
            gc.collect()
            gc.freeze()


class _Child:
    """A forked child, until it is reaped: which worker it stands for and what it reported."""

    def __init__(self, token: int, pid: int, report_fd: int) -> None:
        self.token = token
        self.pid = pid
        self.report_fd: int | None = report_fd
        self.buffer = b""
        self.worker_pid: int | None = None
        self.worker_status: int | None = None
        self.announced = False
        self.exit_sent = False


class _Server:
    def __init__(self, control: socket.socket, preloader: _Preloader) -> None:
        self.control = control
        self.preloader = preloader
        self.preloaded_announced = False
        self.children: dict[int, _Child] = {}
        self.reports: dict[int, _Child] = {}
        """By report pipe read end, while it is open."""
        self.poller = select.poll()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
        signal.set_wakeup_fd(self.wake_w)

    def send(self, doc: dict[str, Any]) -> None:
        self.control.send(json.dumps(doc).encode())

    def serve(self) -> int:
        poller = self.poller
        poller.register(self.control.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        self.send({"op": "ready", "pid": os.getpid()})
        preloader = self.preloader
        # A host already waiting for the hello sends its first spawn within a millisecond or
        # so: give it that long before the first preload step (a module import of up to a few
        # tens of ms, which a spawn arriving during it would wait out).
        wait_ms = READY_GRACE_MS
        while True:
            # While the preload is unfinished, look for requests without waiting and import
            # one more module whenever none is there — but not while a child just forked has
            # yet to be announced: its report comes within a few ms, and the host cannot use
            # the worker (which says hello meanwhile) before it hears "spawned", so an import
            # started now (asyncio, wasmtime: tens of ms) would hold up the very call that is
            # waiting for it.
            may_preload = not preloader.done and not self._announcing()
            try:
                ready = poller.poll(wait_ms if may_preload else None)
            except InterruptedError:
                continue
            wait_ms = 0
            if not ready and may_preload:
                preloader.step()
                self._announce_preloaded()
                continue
            for fd, _event in ready:
                if fd == self.wake_r:
                    self._drain_wakeup()
                    self._reap()
                elif fd in self.reports:
                    self._read_report(self.reports[fd])
                elif fd != self.control.fileno():
                    continue  # a report pipe closed while reaping in this same round
                elif not self._on_control():
                    self._shutdown()
                    return 0
            self._announce_preloaded()  # a spawn may have taken the last pending modules

    def _announcing(self) -> bool:
        """Whether a forked child has not been announced yet (its report, its pipe's EOF or
        its death will do it: each wakes the poll)."""
        return any(not child.announced for child in self.children.values())

    def _announce_preloaded(self) -> None:
        if self.preloader.done and not self.preloaded_announced:
            self.preloaded_announced = True
            self.send({"op": "preloaded"})

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            # It is dead: whatever it reported is in the pipe already.
            self._read_report(child)
            self._send_exited(child, child.worker_status if child.worker_status is not None else status)

    def _send_exited(self, child: _Child, status: int) -> None:
        self._announce(child)  # "spawned" first, always
        if not child.exit_sent:
            child.exit_sent = True
            self.send({"op": "exited", "pid": child.worker_pid, "status": status})

    def _read_report(self, child: _Child) -> None:
        """Take in the child's records; at EOF, close the pipe and announce the worker."""
        fd = child.report_fd
        if fd is None:
            return
        eof = False
        while True:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not data:
                eof = True
                break
            child.buffer += data
        while len(child.buffer) >= RECORD.size:
            tag, value = RECORD.unpack_from(child.buffer)
            child.buffer = child.buffer[RECORD.size :]
            if tag == REPORT_PID and child.worker_pid is None:
                child.worker_pid = value
                self._announce(child)
            elif tag == REPORT_STATUS and child.worker_status is None:
                child.worker_status = value
                self._send_exited(child, value)  # the worker is reaped: no need to wait for its supervisor
        if eof:
            self.poller.unregister(fd)
            del self.reports[fd]
            os.close(fd)
            child.report_fd = None
            self._announce(child)

    def _announce(self, child: _Child) -> None:
        if not child.announced:
            child.announced = True
            if child.worker_pid is None:
                child.worker_pid = child.pid  # no PID namespace: the child is the worker
            self.send({"op": "spawned", "token": child.token, "pid": child.worker_pid})

    def _on_control(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.control, MAX_CONTROL_MESSAGE_BYTES, 3)
        except InterruptedError:
            return True
        except OSError:
            return False
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        token = None
        try:
            doc = json.loads(data)
            token = doc["token"]
            if doc.get("op") != "spawn" or len(fds) != 3:
                raise ValueError("a spawn request carries op 'spawn' and exactly three fds")
            self._spawn(token, doc["spec"], fds)
        except Exception as exc:
            self.send({"op": "spawn_failed", "token": token, "message": f"{type(exc).__name__}: {exc}"})
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _spawn(self, token: int, spec_doc: dict[str, Any], fds: Sequence[int]) -> None:
        from kumix.extensions.proc.worker import EXIT_SETUP_FAILED, become_worker
        from kumix.extensions.proc.worker_spec import WorkerSpec

        spec = WorkerSpec.from_json(spec_doc)
        self.preloader.take(spec.preload)
        _refresh_read_set()  # ~1 ms when nothing changed; otherwise the worker would pay it
        parent = os.getpid()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(report_r, False)
        try:
            pid = os.fork()
        except OSError:
            os.close(report_r)
            os.close(report_w)
            raise
        if pid == 0:
            code = EXIT_SETUP_FAILED
            try:
                self.control.close()
                os.close(self.wake_r)
                os.close(self.wake_w)
                os.close(report_r)
                code = become_worker(
                    spec, channel_read=fds[0], channel_write=fds[1], log=fds[2], parent=parent, report_pipe=report_w
                )
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.write(2, f"kumix worker setup failed: {type(exc).__name__}: {exc}\n".encode())
            finally:
                os._exit(code)
        os.close(report_w)
        child = _Child(token, pid, report_r)
        self.children[pid] = child
        self.reports[report_r] = child
        self.poller.register(report_r, select.POLLIN)

    def _shutdown(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _arguments(argv: Sequence[str]) -> tuple[int, int]:
    """`--control-fd N --parent-pid P`, exactly as `spawner.ForkServer` passes them (argparse
    alone would cost a few ms of every cold start)."""
    if len(argv) != 4 or argv[0] != "--control-fd" or argv[2] != "--parent-pid":
        raise SystemExit("usage: kumix-forkserver --control-fd N --parent-pid P")
    return int(argv[1]), int(argv[3])


def main(argv: Sequence[str] | None = None) -> int:
    control_fd, parent_pid = _arguments(sys.argv[1:] if argv is None else argv)
    hygiene.die_with_parent(parent_pid)
    # The launcher (os.posix_spawn, launch.py) passes on whatever its own process holds that
    # is not close-on-exec: keep 0-2 and the control socket, nothing else.
    os.closerange(3, control_fd)
    os.closerange(control_fd + 1, hygiene.max_fd())
    # Ctrl-C in a terminal reaches the host's whole process group; the host decides
    # when workers stop, not the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    control.setblocking(True)
    _preload_essentials()
    return _Server(control, _Preloader(PRELOAD_MODULES)).serve()


if __name__ == "__main__":
    sys.exit(main())
