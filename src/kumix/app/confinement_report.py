"""What `doctor` reports: which OS confinement layers proc workers get on this machine.

Front ends import only `kumix.app` and `kumix.core`; the probe itself lives with the
confinement code in `kumix.extensions.proc` (`machine_probe.py` forks the child, which
imports the confinement machinery itself: this process does not).
"""

from __future__ import annotations

from kumix.extensions.proc.layers import LAYERS, WEAKER_WITHOUT_NAMESPACES
from kumix.extensions.proc.machine_probe import RunningProbe, probe_machine, start_probe
from kumix.extensions.proc.simulation import SIMULATE_ENV

__all__ = ["LAYERS", "SIMULATE_ENV", "WEAKER_WITHOUT_NAMESPACES", "RunningProbe", "probe_machine", "start_probe"]
