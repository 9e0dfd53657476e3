"""The name of the testing aid that simulates confinement layers as unavailable.

Its own module so the host can pass the variable on to the fork server without importing the
confinement machinery (pyprctl, the seccomp compiler, Landlock), which only workers run.
"""

SIMULATE_ENV = "KUMIX_CONFINEMENT_SIMULATE_UNAVAILABLE"
"""A comma-separated list of layers (or `all`); it can only make confinement stricter or fail
(see `confinement.simulated_unavailable`)."""
