"""`python -m kumix` is the same as the `kumix` command."""

from kumix.cli.main import run

run()
