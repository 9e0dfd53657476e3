"""First-party extensions and default policies, shipped inside the wheel."""
