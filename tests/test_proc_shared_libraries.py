"""The confinement bindings find libc and libseccomp without `ldconfig`, and without importing
`subprocess` at all: `ctypes.util` is a stand-in until something else of it is needed, and then
it is the standard module's behaviour unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux confinement")

FRESH = """
import json, sys
import kumix.extensions.proc.confinement  # all three bindings, as the probe child and the fork server
import ctypes.util
before = "subprocess" in sys.modules
found = {name: ctypes.util.find_library(name) for name in ("c", "seccomp")}
from ctypes.util import find_library
other = find_library("m")  # not one of the sonames: the standard lookup, loaded now
print(json.dumps({"subprocess_before": before, "found": found, "other": other,
                  "subprocess_after": "subprocess" in sys.modules,
                  "standard_attribute": callable(ctypes.util.test)}))
"""


def test_the_bindings_load_without_subprocess_and_other_lookups_are_the_standard_ones() -> None:
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["subprocess_before"] is False
    assert doc["found"] == {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
    assert str(doc["other"]).startswith("libm.so")
    assert doc["subprocess_after"] is True
    assert doc["standard_attribute"] is True


ALREADY = """
import json, ctypes.util
standard = ctypes.util.find_library
import kumix.extensions.proc.shared_libraries as shared
print(json.dumps({"same_module": type(ctypes.util).__name__ == "module",
                  "patched": ctypes.util.find_library is shared.find_library,
                  "c": ctypes.util.find_library("c"), "m": ctypes.util.find_library("m") == standard("m")}))
"""


def test_a_ctypes_util_imported_before_is_patched_in_place() -> None:
    done = subprocess.run([sys.executable, "-c", ALREADY], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"same_module": True, "patched": True, "c": "libc.so.6", "m": True}
