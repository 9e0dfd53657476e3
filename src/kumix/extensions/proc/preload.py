"""Modules the worker template imports before any worker is forked from it.

A forked worker inherits them already loaded, so it pays no import cost, and a worker that
has switched to an unprivileged uid or is confined by Landlock can still use them even
though it can no longer read the interpreter's files. Add a module here when bundled
extensions or the SDK need it at run time.
"""

PRELOAD_MODULES: tuple[str, ...] = (
    "asyncio",
    "json",
    "re",
    "html",
    "msgspec",
    "markdown_it",
    "mdit_py_plugins",
    "linkify_it",
    "kumix.sdk.proc",
    # libwasmtime is loaded here so a confined worker never has to read or map it later.
    "wasmtime",
    "kumix.sdk.wasm",
)
