"""Use cases: wire matrix, store and extensions together for one user."""
