"""What `doctor` reports: which OS confinement layers proc workers get on this machine.

Front ends import only `kumix.app` and `kumix.core`; the probe itself lives with the
confinement code in `kumix.extensions.proc.confinement`.
"""

from __future__ import annotations

from kumix.extensions.proc.confinement import LAYERS, WEAKER_WITHOUT_NAMESPACES, probe_machine
from kumix.extensions.proc.simulation import SIMULATE_ENV

__all__ = ["LAYERS", "SIMULATE_ENV", "WEAKER_WITHOUT_NAMESPACES", "probe_machine"]
