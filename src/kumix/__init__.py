"""Kumix: a Matrix chat client whose features come from governed extensions."""

__version__ = "0.1.0"
