"""The response headers every answer of the local server carries, and why.

A loopback bind is not a browser boundary: any page the user visits can aim requests at
127.0.0.1, and anything the page renders could be injected text. The headers below make
the browser refuse what Kumix never needs (inline script, eval, plugins, framing, foreign
connections, powerful features), so an injection has as little to work with as possible.
"""

from __future__ import annotations


def _csp(*, nonce: str | None = None, frame_egress: tuple[str, ...] = ()) -> str:
    inline = f" 'nonce-{nonce}'" if nonce else ""
    egress = "".join(f" {source}" for source in frame_egress)
    return "; ".join((
        "default-src 'none'",
        # Only the server's own files; never 'unsafe-inline' or 'unsafe-eval'. A page that
        # mounts UI frames adds its response's nonce: a srcdoc frame inherits this policy,
        # and the frame's inline scripts and styles carry that nonce (docs/ui-extensions.md).
        f"script-src 'self'{inline}",
        f"style-src 'self'{inline}",
        f"img-src 'self' blob: data:{egress}",
        "font-src 'self'",
        "media-src 'self' blob:",
        # A frame's loads must pass this policy too: the policy's ui.connectSrc (the cap of
        # every frame's egress; none by default) is added here, or no frame could use it.
        f"connect-src 'self'{egress}",
        # srcdoc frames are not a fetch, so 'none' lets them load while it stops a frame
        # navigating itself (or by meta refresh) to any URL.
        "frame-src 'none'",
        "child-src 'none'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "require-trusted-types-for 'script'",
        # `kumix` is the page's one policy (lib/trusted-html.js); `default` is the policy the
        # bootstrap of each frame creates in the frame's own realm (a frame inherits this list).
        "trusted-types kumix default" if nonce else "trusted-types kumix",
    ))


PAGE_CSP = _csp()
"""Content-Security-Policy of API answers, static files and errors."""


def page_csp(nonce: str, frame_egress: tuple[str, ...] = ()) -> str:
    """Content-Security-Policy of one answer with the page (`/`, `/ext/{id}`): `nonce` is
    new for that answer and is the one the server writes into the frames that page mounts."""
    return _csp(nonce=nonce, frame_egress=frame_egress)

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
