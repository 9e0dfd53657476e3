"""The file rules of loading: a plain relative path, read below the extension directory, no symlink.

Every component is opened with O_NOFOLLOW relative to a directory fd, and the read is bounded.

No wasmtime here: what leaves this module is bytes, or `WasmRejected` naming the rule.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from kumix.core.errors import WasmRejected
from kumix.extensions.wasm.limits import MiB

MAX_MODULE_BYTES = 16 * MiB
"""Bundled modules are tens of KiB. The size does not bound compile time on its own (many
tiny functions compile slowly), so `load` also waits for the compiler only until the call's
deadline."""

_PLAIN_RELATIVE_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def path_problem(path: str) -> str | None:
    """Why `path` is not a plain relative path inside the extension, or None if it is."""
    if not path:
        return "empty path"
    if "\0" in path:
        return "path contains a NUL byte"
    if "://" in path or _URL_SCHEME.match(path):
        return "a URL; modules load only from files inside the extension directory"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", path):
        return "an absolute path; use a path relative to the extension directory"
    parts = path.replace("\\", "/").split("/")
    if ".." in parts:
        return "a '..' component; modules must stay inside the extension directory"
    if "\\" in path or any(part in ("", ".") for part in parts):
        return "not a normalized relative path"
    if _PLAIN_RELATIVE_PATH.fullmatch(path) is None:
        return "not a plain relative path (letters, digits, '_', '-', '.'; no hidden components)"
    return None


def read_module_file(extension_dir: Path, path: str) -> bytes:
    """Read `path` below `extension_dir` without following any symlink; bounded."""
    parts = path.split("/")
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    nofollow = os.O_NOFOLLOW
    try:
        dir_fd = os.open(extension_dir, flags_dir)
    except OSError as exc:
        raise WasmRejected(f"{path}: extension directory unreadable: {exc.strerror}") from None
    fds = [dir_fd]
    try:
        for part in parts[:-1]:
            try:
                fds.append(os.open(part, flags_dir | nofollow, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise WasmRejected(
                        f"{path}: component {part!r} is a symlink or not a directory; symlinks are refused"
                    ) from None
                raise WasmRejected(f"{path}: cannot open directory {part!r}: {exc.strerror}") from None
        try:
            # O_NONBLOCK: a FIFO planted under the module's name must not block the worker.
            fd = os.open(parts[-1], os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | nofollow, dir_fd=fds[-1])
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise WasmRejected(f"{path}: is a symlink; symlinks are refused") from None
            raise WasmRejected(f"{path}: cannot open module file: {exc.strerror}") from None
        fds.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WasmRejected(f"{path}: not a regular file")
        if info.st_size > MAX_MODULE_BYTES:
            raise WasmRejected(f"{path}: {info.st_size} bytes exceeds the {MAX_MODULE_BYTES}-byte module limit")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 * MiB, MAX_MODULE_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_MODULE_BYTES:
                raise WasmRejected(f"{path}: grew past the {MAX_MODULE_BYTES}-byte module limit while reading")
        data = b"".join(chunks)
    finally:
        for open_fd in reversed(fds):
            os.close(open_fd)
    # Belt and braces: the file we read must resolve inside the directory.
    resolved = (extension_dir / path).resolve()
    if not resolved.is_relative_to(extension_dir.resolve()):
        raise WasmRejected(f"{path}: resolves outside the extension directory")
    return data
