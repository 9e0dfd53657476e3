"""First-party extensions and default policies, shipped inside the wheel."""

from pathlib import Path

BUNDLED_DIR = Path(__file__).parent
"""Read as plain files, not through `importlib.resources`: Kumix runs from an unpacked
install only (workers are confined to their extension directory, a real one), and
importing `importlib.resources` (zipfile, tempfile, shutil…) would cost every command-line
start ~15 ms."""
