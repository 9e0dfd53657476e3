"""File-system primitives every adapter shares (below the adapters, beside `core`)."""
