"""The worker side of a proc extension: from a freshly forked child to a serving runtime.

Order matters and is the contract with `confinement.py`:
1. hygiene — own session/process group, PDEATHSIG, channel on fds 3/4, log on 1/2, every
   other fd closed, allowlisted environment, rlimits;
2. `confine_worker` exactly once (strict policy: failure answers `confinement_unavailable`
   in the hello and the worker exits; dev policy: runs unconfined and says so in its log);
   it sets PDEATHSIG again after every uid switch and namespace entry, and exits when the
   fork server is no longer its parent; with the namespaces it forks once more into its own
   PID namespace, and only the child (pid 1 there) goes on (pid_namespace.py);
3. `set_worker_context`, then the extension's entry file is imported;
4. the hello frame, then the SDK's request loop.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from pathlib import Path

from kumix.core.errors import ConfinementUnavailable
from kumix.extensions.manifest import manifest_from_host
from kumix.extensions.proc import hygiene
from kumix.extensions.proc.confinement import ConfinementSpec, confine_worker
from kumix.extensions.proc.protocol import WorkerChannel
from kumix.extensions.proc.worker_spec import WorkerSpec
from kumix.sdk import proc as sdk_proc
from kumix.sdk.runtime_context import WorkerContext, set_worker_context

EXIT_CONFINEMENT_UNAVAILABLE = 4
EXIT_BAD_EXTENSION = 7
EXIT_SETUP_FAILED = 70


def become_worker(
    spec: WorkerSpec, *, channel_read: int, channel_write: int, log: int, parent: int, report_pipe: int | None = None
) -> int:
    """Run in the forked child; returns the exit code. Never returns into the fork server.

    `report_pipe`: the pipe on which the fork server learns which process runs the worker (the PID
    namespace's grandchild, pid_namespace.py) and how it ended."""
    os.setsid()
    hygiene.die_with_parent(parent)
    hygiene.reset_signals()
    hygiene.place_fds(channel_read, channel_write, log, report_pipe)
    scratch = Path(spec.scratch_dir) if spec.scratch_dir else None
    hygiene.replace_environment(hygiene.fresh_environment(spec.extension_id, scratch))
    hygiene.apply_rlimits(
        hygiene.WorkerLimits(
            max_memory_mb=spec.max_memory_mb,
            max_cpu_seconds=spec.max_cpu_seconds,
            max_log_bytes=spec.max_log_bytes,
        )
    )
    hygiene.redirect_python_streams()
    # The extension directory is read-only to a confined worker; never try to write .pyc there.
    sys.dont_write_bytecode = True
    channel = WorkerChannel(max_input_bytes=spec.max_input_bytes, max_output_bytes=spec.max_output_bytes)
    write_fd = hygiene.CHANNEL_WRITE_FD

    def send(frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            view = view[os.write(write_fd, view) :]

    extension_dir = Path(spec.extension_dir)
    try:
        report = confine_worker(
            ConfinementSpec(
                extension_dir=extension_dir,
                scratch_dir=scratch,
                required=spec.require_confinement,
                extension_id=spec.extension_id,
                parent_pid=parent,
                max_tasks=spec.max_tasks,
                pid_report_fd=hygiene.REPORT_FD if report_pipe is not None else None,
                accept_without_namespaces=spec.allow_without_namespaces,
            )
        )
    except ConfinementUnavailable as exc:
        send(channel.hello_failed(exc.code, exc.message))
        return EXIT_CONFINEMENT_UNAVAILABLE
    warning = report.warning()
    if warning is not None:
        sys.stderr.write(f"kumix worker {spec.extension_id} pid {os.getpid()}: WARNING {warning}\n")
    else:
        sys.stderr.write(f"kumix worker {spec.extension_id} pid {os.getpid()}: started, confined\n")
    # After a uid switch the original paths may be unreachable; confinement says how to reach them.
    extension_dir = report.extension_dir or extension_dir
    scratch = report.scratch_dir if scratch is not None else None

    manifest = manifest_from_host(spec.manifest, display=f"{spec.extension_dir}/manifest.json")
    set_worker_context(
        WorkerContext(
            extension_id=spec.extension_id,
            extension_dir=extension_dir,
            manifest=manifest,
            max_memory_mb=spec.max_memory_mb,
            scratch_dir=scratch,
        )
    )
    try:
        _import_entry(spec.extension_id, extension_dir, spec.entry)
    except MemoryError:
        send(channel.hello_failed("resource_limit", "worker ran out of memory while importing its entry file"))
        return sdk_proc.EXIT_RESOURCE_LIMIT
    except BaseException as exc:
        traceback.print_exception(exc, file=sys.stderr)
        send(channel.hello_failed("extension_error", f"importing {spec.entry} failed: {type(exc).__name__}: {exc}"))
        return EXIT_BAD_EXTENSION
    return sdk_proc.serve(
        channel,
        read_fd=hygiene.CHANNEL_READ_FD,
        write_fd=write_fd,
        hello={"confined": report.confined, "layers": dict(report.layers), "warning": warning},
    )


def _import_entry(extension_id: str, extension_dir: Path, entry: str) -> None:
    path = extension_dir / entry
    module_name = "kumix_extension_" + extension_id.replace("-", "_")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # Sibling modules of the entry file are importable, as an author would expect.
    sys.path.insert(0, str(extension_dir))
    spec.loader.exec_module(module)
