"""The response headers every answer of the local server carries, and why.

A loopback bind is not a browser boundary: any page the user visits can aim requests at
127.0.0.1, and anything the page renders could be injected text. The headers below make
the browser refuse what Kumix never needs (inline script, eval, plugins, framing, foreign
connections, powerful features), so an injection has as little to work with as possible.
"""

from __future__ import annotations

PAGE_CSP = "; ".join((
    "default-src 'none'",
    # Only the server's own files; never 'unsafe-inline' or 'unsafe-eval' (a srcdoc frame
    # inherits this policy, so the UI-extension host adds per-response nonces instead).
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "font-src 'self'",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "frame-src 'none'",
    "worker-src 'self'",
    "manifest-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
    "require-trusted-types-for 'script'",
    "trusted-types kumix",
))
"""Content-Security-Policy of pages, API answers, static files and errors."""

MEDIA_CSP = "sandbox; default-src 'none'"
"""Content-Security-Policy of a file from a room: even if a browser rendered it as a
document, it would be an opaque-origin sandbox with no script and no loads."""

PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in ("camera", "microphone", "geolocation", "usb", "serial", "hid", "payment",
                    "bluetooth", "display-capture", "midi")
)

COMMON: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("permissions-policy", PERMISSIONS_POLICY),
    ("x-frame-options", "DENY"),
)

NO_STORE = ("cache-control", "no-store")


def security_headers(existing: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`existing` with the security set added. A route that chose its own CSP (media) keeps
    it; every other header of the set is forced, overriding whatever the route said.
    Nothing is cached (`no-store`): every answer needs the session, and a cached one would
    outlive it."""
    names = {k.lower() for k, _ in existing}
    forced = {k for k, _ in COMMON} | {NO_STORE[0]}
    out = [(k, v) for k, v in existing if k.lower().decode("latin-1") not in forced]
    if b"content-security-policy" not in names:
        out.append((b"content-security-policy", PAGE_CSP.encode()))
    for k, v in COMMON:
        out.append((k.encode(), v.encode()))
    out.append((NO_STORE[0].encode(), NO_STORE[1].encode()))
    return out
