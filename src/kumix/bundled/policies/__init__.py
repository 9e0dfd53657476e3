"""The bundled policies: strict (default, deny-by-default) and dev."""
