"""The `kumix` command line."""
