"""Local state on SQLite: settings, extension state, timeline cache, outbox, search, vault."""
