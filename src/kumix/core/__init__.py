"""Domain models, ports and errors. No I/O lives here."""
