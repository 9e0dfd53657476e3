"""Modules the worker template imports before any worker is forked from it.

A forked worker inherits them already loaded, so it pays no import cost, and a worker that
has switched to an unprivileged uid or is confined by Landlock can still use them even
though it can no longer read the interpreter's files. Add a module here when bundled
extensions or the SDK need it at run time.

The fork server imports them one at a time between requests (forkserver.py). A spawn that
comes before it has finished names the ones its entry file imports (`entry_preloads`), and
the server imports those first, before it forks: once, in the template, rather than in every
confined worker that needs them — and so also for the spare started beside the first worker.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

PRELOAD_MODULES: tuple[str, ...] = (
    # markdown-it-py first: the bundled markdown renderer is the first extension most
    # processes call (a render, `kumix serve`'s first message).
    "markdown_it",
    "mdit_py_plugins",
    "linkify_it",
    "asyncio",
    "json",
    "re",
    "html",
    "msgspec",
    "kumix.sdk.proc",
    # libwasmtime is loaded here so a confined worker never has to read or map it later.
    "wasmtime",
    "kumix.sdk.wasm",
)

ENTRY_SCAN_BYTES = 65_536
"""How much of an entry file is scanned for its imports; module imports sit at the top."""

_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import[ \t]+\(?([\w \t,]*)|import[ \t]+([\w \t,.]+))",
    re.MULTILINE,
)


def entry_preloads(entry_file: Path) -> tuple[str, ...]:
    """The modules of PRELOAD_MODULES that `entry_file` names in an import statement, in
    PRELOAD_MODULES order; () when it cannot be read as a regular file.

    A textual scan, not a parse: the file is the extension's (untrusted) code, and the result
    only chooses which of the server's own trusted modules it imports first, so a name found
    in a comment or a string costs at most an import the server would make anyway, and an
    import the scan misses is made by the worker itself, as without the hint."""
    try:
        # O_NONBLOCK: a FIFO planted as the entry must not stall the host; O_NOFOLLOW: the
        # host reads the extension's own file, not what a link points to.
        fd = os.open(entry_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ()
        text = os.read(fd, ENTRY_SCAN_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return ()
    finally:
        os.close(fd)
    named: set[str] = set()
    for match in _IMPORT_LINE.finditer(text):
        package, members, modules = match.groups()
        if package is not None:
            named.add(package)
            named.update(f"{package}.{member.strip()}" for member in members.split(","))
        else:
            named.update(part.strip().split(" ")[0] for part in modules.split(","))
    return tuple(name for name in PRELOAD_MODULES if name in named)
