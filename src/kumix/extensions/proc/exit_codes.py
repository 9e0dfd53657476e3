"""Exit statuses of a proc worker: the part of the host ⇄ worker contract that travels
through wait(2) rather than the channel.

Both sides import it: the worker runtime exits with these, the host's session classifies a
worker's end by them. It sits beside `protocol.py` (the frames) so that neither side of the
wire needs the other's modules — in particular the host never imports the authors' SDK.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RESOURCE_LIMIT = 3
"""The worker ran out of memory under its RLIMIT_AS; the host reports `resource_limit`."""
EXIT_PROTOCOL = 5
"""The host sent bytes the worker could not parse; should never happen."""
