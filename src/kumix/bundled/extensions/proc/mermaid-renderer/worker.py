"""Placeholder; the worker is written with the proc host."""
