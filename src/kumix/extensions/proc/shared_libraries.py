"""The C libraries the confinement bindings load, found without running `ldconfig`.

pyprctl, pyseccomp and landlockpy each look up libc (pyseccomp also libseccomp) with
`ctypes.util.find_library`, which on Linux runs `/sbin/ldconfig -p` in a subprocess on every
call: five processes per `kumix doctor`, four in every fork server start, a few milliseconds
each. Importing this module (privileges, seccomp_filter and landlock_rules do, before their
binding) answers those two names with their soname once the dynamic loader has loaded it by
that name (through the same /etc/ld.so.cache `ldconfig -p` prints), which is what
`find_library` returns on glibc; any other name, or a soname that does not load (another C
library, a libseccomp with a new major version), goes to the original lookup unchanged.

Importing `ctypes.util` itself imports `subprocess` (with `threading`, `locale` and more: ~8 ms
of the doctor's probe child and of the fork server's start, neither of which runs a process).
So when nothing has imported it yet, `ctypes.util` is a stand-in that answers `find_library`
as above and loads the standard module on the first use of anything else (or of another
name's lookup), then hands that over to it.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
"""What `ctypes.util.find_library` answers for these names on glibc Linux."""

_system_module: types.ModuleType | None = sys.modules.get("ctypes.util")


def find_library(name: str) -> str | None:
    soname = SONAMES.get(name)
    if soname is not None:
        try:
            ctypes.CDLL(soname)
        except OSError:
            pass
        else:
            return soname
    result: str | None = _system_find_library(name)
    return result


def system_ctypes_util() -> types.ModuleType:
    """The standard `ctypes.util`, loaded from its file the first time it is needed."""
    global _system_module, _system_find_library
    if _system_module is None:
        spec = importlib.machinery.PathFinder.find_spec("ctypes.util", ctypes.__path__)
        if spec is None or spec.loader is None:
            raise ImportError("the standard ctypes.util is missing", name="ctypes.util")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _system_module, _system_find_library = module, module.find_library
    return _system_module


def _load_and_find_library(name: str) -> str | None:
    result: str | None = system_ctypes_util().find_library(name)
    return result


_system_find_library: Any = _load_and_find_library if _system_module is None else _system_module.find_library


class _CtypesUtilStandIn(types.ModuleType):
    """`ctypes.util` for the bindings: `find_library` is this module's, every other name the
    standard module's (loaded then)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(system_ctypes_util(), name)


if _system_module is None:
    _stand_in = _CtypesUtilStandIn("ctypes.util", "the standard ctypes.util, loaded on first use")
    _stand_in.find_library = find_library  # type: ignore[attr-defined]
    sys.modules["ctypes.util"] = _stand_in
    ctypes.util = _stand_in  # type: ignore[attr-defined]  # what `import ctypes.util` binds
elif _system_module.find_library is not find_library:
    _system_module.find_library = find_library  # type: ignore[attr-defined]
