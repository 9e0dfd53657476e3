"""`python -m kumix` is the same as the `kumix` command."""

from kumix.cli.entry import run

run()
