"""UI extensions: frame documents (CSP, bootstrap), sandbox and egress, the server half of the bridge."""
