"""A spawn names the preloaded modules its entry file imports, and the fork server imports
those before it forks the worker — only ever names of its own PRELOAD_MODULES."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kumix.extensions.proc import forkserver
from kumix.extensions.proc.preload import PRELOAD_MODULES, entry_preloads
from kumix.extensions.proc.worker_spec import WorkerSpec

BUNDLED = Path(forkserver.__file__).resolve().parents[2] / "bundled" / "extensions" / "proc"


class _Stop(Exception):
    """Ends a `serve` loop driven by `_scripted_server`."""


def _scripted_server(polls: list[list[tuple[int, int]]], preload: list[str]) -> tuple[Any, list[int | None]]:
    """A `_Server` without sockets or a poller of its own: its poll answers come from `polls`, one
    per round (then `_Stop`); returns it and the timeouts it polled with."""
    timeouts: list[int | None] = []

    class Poller:
        def register(self, fd: int, events: int) -> None:
            pass

        def poll(self, timeout: int | None) -> list[tuple[int, int]]:
            timeouts.append(timeout)
            if len(timeouts) > len(polls):
                raise _Stop
            return polls[len(timeouts) - 1]

    class Control:
        def fileno(self) -> int:
            return -1

        def send(self, data: bytes) -> None:
            pass

    server: Any = object.__new__(forkserver._Server)
    server.poller, server.control, server.wake_r = Poller(), Control(), -2
    server.preloader = forkserver._Preloader(preload)
    server.preloaded_announced = False
    server.children, server.reports = {}, {}
    return server, timeouts


def test_the_markdown_renderer_asks_for_markdown_it() -> None:
    assert entry_preloads(BUNDLED / "markdown-renderer" / "worker.py") == ("markdown_it", "kumix.sdk.proc")
    assert entry_preloads(BUNDLED / "theme-default" / "worker.py") == ("kumix.sdk.proc",)


def test_every_import_form_is_read_and_only_preloaded_names_come_out(tmp_path: Path) -> None:
    entry = tmp_path / "worker.py"
    entry.write_text(
        "import os, json as j\n"
        "from kumix.sdk import proc, wasm\n"
        "from markdown_it import (\n    MarkdownIt,\n)\n"
        "import an_authors_own_module\n"
        "def f():\n    import html\n"
    )
    found = entry_preloads(entry)
    assert found == ("markdown_it", "json", "html", "kumix.sdk.proc", "kumix.sdk.wasm")
    assert set(found) <= set(PRELOAD_MODULES)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "missing"])
def test_an_entry_that_is_not_a_regular_file_asks_for_nothing(tmp_path: Path, kind: str) -> None:
    entry = tmp_path / "worker.py"
    if kind == "symlink":
        target = tmp_path / "elsewhere.py"
        target.write_text("import markdown_it\n")
        entry.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(entry)  # no writer: a blocking open would never return
    elif kind == "directory":
        entry.mkdir()
    assert entry_preloads(entry) == ()


def test_the_hint_survives_the_trip_to_the_fork_server() -> None:
    spec = WorkerSpec("x", "/x", "worker.py", {}, 64, 1, 1, 1, 1, True, preload=("markdown_it",))
    assert WorkerSpec.from_json(spec.to_json()) == spec
    old = {k: v for k, v in spec.to_json().items() if k != "preload"}  # a host without hints
    assert WorkerSpec.from_json(old).preload == ()


def test_take_imports_only_pending_names(monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    monkeypatch.setattr(forkserver.importlib, "import_module", lambda name: imported.append(name))
    monkeypatch.setattr(forkserver, "_WARM_UPS", {})
    preloader = forkserver._Preloader(["alpha", "beta", "gamma"])
    preloader.take(["gamma", "os", "not_in_the_list"])
    assert imported == ["gamma"], "a spawn can only move the server's own modules forward"
    assert preloader.pending == ["alpha", "beta"]
    preloader.take(["gamma"])
    assert imported == ["gamma"], "imported once"
    preloader.step()
    assert imported == ["gamma", "alpha"]


def test_the_server_imports_the_hint_before_it_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    pending_at_fork: list[list[str]] = []
    monkeypatch.setattr(forkserver.importlib, "import_module", lambda name: imported.append(name))
    monkeypatch.setattr(forkserver, "_WARM_UPS", {})
    server: Any = object.__new__(forkserver._Server)
    server.preloader = forkserver._Preloader(["asyncio", "markdown_it", "wasmtime"])

    def fork() -> int:
        pending_at_fork.append(list(server.preloader.pending))
        raise OSError("no fork in this test")

    monkeypatch.setattr(forkserver.os, "fork", fork)
    spec = WorkerSpec("x", "/x", "worker.py", {}, 64, 1, 1, 1, 1, True, preload=("markdown_it",))
    with pytest.raises(OSError, match="no fork"):
        server._spawn(1, spec.to_json(), (0, 1, 2))
    assert imported == ["markdown_it"]
    assert pending_at_fork == [["asyncio", "wasmtime"]]


def test_preloaded_is_announced_once_even_when_a_spawn_took_the_last_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Driven through `serve`: a spawn whose entry takes the last pending modules ends the
    preload, and the host hears "preloaded" right after that round, once."""
    sent: list[dict[str, Any]] = []
    server, _timeouts = _scripted_server([[(-1, 1)]], ["a", "b"])  # one round: a spawn request
    monkeypatch.setattr(server, "send", sent.append)

    def spawn_taking_the_rest() -> bool:
        server.preloader.pending.clear()  # what take() leaves when the entry needed them all
        return True

    monkeypatch.setattr(server, "_on_control", spawn_taking_the_rest)
    with pytest.raises(_Stop):
        server.serve()
    assert sent == [{"op": "ready", "pid": forkserver.os.getpid()}, {"op": "preloaded"}]
    server._announce_preloaded()
    assert sent.count({"op": "preloaded"}) == 1


def test_a_warmed_up_markdown_renderer_compiles_no_linkify_pretest() -> None:
    """The warm-up leaves linkify-it's pretest pattern in `re`'s cache (what a worker inherits)."""
    import re

    import markdown_it

    md = markdown_it.MarkdownIt("commonmark", {"linkify": True}).enable(["linkify"])
    pattern = md.linkify.re["pretest"]

    def cached() -> bool:
        return any(isinstance(key, tuple) and len(key) > 1 and key[1] == pattern
                   for key in re._cache)  # type: ignore[attr-defined]

    # Whatever an earlier test left in the process-wide cache must not make this pass.
    re.purge()
    assert not cached()
    forkserver._warm_markdown()
    assert cached(), "the pretest pattern is compiled and cached"


def test_right_after_ready_the_server_waits_briefly_for_a_spawn_before_preloading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host already waiting for the hello sends its spawn at once; the first preload step (an
    import a spawn would wait out) comes only after a short grace, later steps without one."""
    steps: list[str] = []
    server, timeouts = _scripted_server([[], []], ["a", "b", "c"])
    monkeypatch.setattr(server.preloader, "step", lambda: steps.append("step"))
    with pytest.raises(_Stop):
        server.serve()
    assert timeouts == [forkserver.READY_GRACE_MS, 0, 0]
    assert forkserver.READY_GRACE_MS > 0
    assert steps == ["step", "step"]


def test_no_preload_step_runs_between_a_fork_and_its_announcement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host uses a worker only once it hears "spawned"; an import started between the fork
    and the child's report (asyncio, wasmtime: tens of ms) would hold the waiting call up. So
    while a child is unannounced the server blocks for its report instead of preloading, and
    preloads again once it is announced."""
    report_fd = 42
    steps: list[int] = []
    # Rounds: a spawn request, the child's report, nothing (time to preload).
    server, timeouts = _scripted_server([[(-1, 1)], [(report_fd, 1)], []], ["a", "b", "c"])
    monkeypatch.setattr(server.preloader, "step", lambda: steps.append(len(timeouts)))

    def spawn() -> bool:
        child = forkserver._Child(token=1, pid=1234, report_fd=report_fd)
        server.children[child.pid] = child
        server.reports[report_fd] = child
        return True

    def report(child: Any) -> None:
        child.announced = True

    monkeypatch.setattr(server, "_on_control", spawn)
    monkeypatch.setattr(server, "_read_report", report)
    with pytest.raises(_Stop):
        server.serve()
    assert timeouts[:3] == [forkserver.READY_GRACE_MS, None, 0], "blocked for the report, then preloading again"
    assert steps == [3], "the only step came after the announcement"
