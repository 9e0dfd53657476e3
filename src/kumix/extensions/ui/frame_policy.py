"""What one UI extension's frame gets: its sandbox flags, its network egress, its CSP.

Each is the policy's cap intersected with what the manifest asks for, so neither side alone
can open anything: a permissive policy grants nothing a manifest did not ask for, and a
manifest asks in vain for what the policy does not list.
"""

from __future__ import annotations

from dataclasses import dataclass

from kumix.extensions.manifest import ConnectSource, Manifest
from kumix.extensions.policy import Policy

FORBIDDEN_SANDBOX_FLAGS = frozenset(
    {
        # With allow-scripts, allow-same-origin lets the frame remove its own sandbox.
        "allow-same-origin",
        # These let a frame navigate the host page away (phishing, or leaving Kumix).
        "allow-top-navigation",
        "allow-top-navigation-by-user-activation",
        "allow-top-navigation-to-custom-protocols",
        # A popup without the sandbox would run the extension unconfined in a new window.
        "allow-popups-to-escape-sandbox",
    }
)
"""Never granted, whatever policy and manifest say (also refused by the manifest schema)."""


@dataclass(frozen=True)
class Egress:
    """One granted network source and the reason the manifest gave for it."""

    source: str
    reason: str


@dataclass(frozen=True)
class FrameGrant:
    """The sandbox flags and network sources one UI extension's frame gets."""

    sandbox: tuple[str, ...]
    egress: tuple[Egress, ...]
    refused_egress: tuple[ConnectSource, ...]
    """Sources the manifest asked for that the policy does not cap in; shown, never granted."""

    @property
    def sandbox_attribute(self) -> str:
        return " ".join(self.sandbox)

    @property
    def connect_sources(self) -> tuple[str, ...]:
        return tuple(e.source for e in self.egress)


def _split(source: str) -> tuple[str, str, str]:
    """`https://host[:port][/path]` → (host, port, path); the schemas guarantee the shape."""
    rest = source.removeprefix("https://")
    hostport, slash, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, port, slash + path


def policy_covers(policy_source: str, wanted: str) -> bool:
    """Whether a policy `ui.connectSrc` entry covers a manifest source.

    Exact match, or the policy's `https://*.example.org` covering a subdomain of
    example.org (as CSP's own wildcard does); ports must be equal and a policy path must
    equal the manifest's path, so a policy never covers more than it names.
    """
    if policy_source == wanted:
        return True
    p_host, p_port, p_path = _split(policy_source)
    w_host, w_port, w_path = _split(wanted)
    if p_port != w_port or (p_path and p_path != w_path):
        return False
    if p_host.startswith("*."):
        suffix = p_host[1:]
        return w_host.endswith(suffix) and len(w_host) > len(suffix) and "*" not in w_host
    return False


def frame_grant(policy: Policy, manifest: Manifest) -> FrameGrant:
    ask = manifest.ui_ask
    cap = set(policy.ui.sandbox)
    sandbox = tuple(flag for flag in ask.sandbox if flag in cap and flag not in FORBIDDEN_SANDBOX_FLAGS)
    granted: list[Egress] = []
    refused: list[ConnectSource] = []
    for item in ask.connect_src:
        if any(policy_covers(p, item.source) for p in policy.ui.connect_src):
            granted.append(Egress(item.source, item.reason))
        else:
            refused.append(item)
    return FrameGrant(sandbox=sandbox, egress=tuple(granted), refused_egress=tuple(refused))


def frame_csp(grant: FrameGrant) -> str:
    """The CSP the frame document carries in its first `<meta>`.

    The frame also inherits the host page's CSP (a srcdoc frame shares its policy
    container), so every load must pass both. This one has no source list for scripts or
    styles, so the host's nonce can never reach a URL load (`<script src>`, `import()`),
    while inline code still needs the host's nonce to pass the host's policy.
    """
    connect = " ".join(grant.connect_sources) or "'none'"
    images = " ".join(("data:", *grant.connect_sources))
    directives = [
        "default-src 'none'",
        "script-src 'unsafe-inline'",
        "style-src 'unsafe-inline'",
        f"img-src {images}",
        f"connect-src {connect}",
        # Fall back to default-src anyway; named so that frame-src and worker-src, which
        # fall back through child-src, are 'none' whatever a browser's fallback chain says.
        "child-src 'none'",
        # These two have no fallback to default-src: unnamed, they would allow everything.
        "form-action 'none'",
        "base-uri 'none'",
        # Every string that becomes HTML passes the bootstrap's default policy, which refuses
        # frame markup (a nested srcdoc frame is a fresh realm where the deleted WebRTC
        # constructors are back, web.md); no other policy can be made, and no string can
        # ever become script. 'none' (web.md) would also stop every library that uses
        # innerHTML, mermaid among them (measured).
        "require-trusted-types-for 'script'",
        "trusted-types default",
    ]
    return "; ".join(directives)
