"""Proc extensions: worker processes, the wire protocol between host and worker, confinement."""
