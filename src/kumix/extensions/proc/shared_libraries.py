"""The C libraries the confinement bindings load, found without running `ldconfig`.

pyprctl, pyseccomp and landlockpy each look up libc (pyseccomp also libseccomp) with
`ctypes.util.find_library`, which on Linux runs `/sbin/ldconfig -p` in a subprocess on every
call: five processes per `kumix doctor`, four in every fork server start, a few milliseconds
each. Importing this module (privileges, seccomp_filter and landlock_rules do, before their
binding) answers those two names with their soname once the dynamic loader has loaded it by
that name (through the same /etc/ld.so.cache `ldconfig -p` prints), which is what
`find_library` returns on glibc; any other name, or a soname that does not load (another C
library, a libseccomp with a new major version), goes to the original lookup unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util

SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
"""What `ctypes.util.find_library` answers for these names on glibc Linux."""

_system_find_library = ctypes.util.find_library


def find_library(name: str) -> str | None:
    soname = SONAMES.get(name)
    if soname is not None:
        try:
            ctypes.CDLL(soname)
        except OSError:
            pass
        else:
            return soname
    return _system_find_library(name)


if ctypes.util.find_library is _system_find_library:
    ctypes.util.find_library = find_library
