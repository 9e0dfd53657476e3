"""The governed extension system: manifests, policies, discovery and the hosts."""
