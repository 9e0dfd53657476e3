"""Building one frame document from a UI extension's directory.

Files are read only from inside the extension directory: the path is normalized and
resolved first and the containment checked after (two VS Code CVEs came from checking
before normalizing), and only regular files within the size bounds are read.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kumix.core.errors import BadRequest, ExtensionFailed
from kumix.extensions.manifest import Manifest
from kumix.extensions.policy import Policy
from kumix.extensions.ui.bootstrap import BootstrapConfig, bootstrap_script
from kumix.extensions.ui.frame_policy import FrameGrant, frame_csp, frame_grant
from kumix.extensions.ui.html_document import FrameParts, clean_to_fixpoint, compose

MAX_ENTRY_BYTES = 1_048_576
"""An entry page is markup, not a bundle; 1 MiB is far above any hand-written page."""
MAX_FILE_BYTES = 8_388_608
"""One script or stylesheet inlined into the frame: vendored mermaid is 3.5 MB minified."""
MAX_DOCUMENT_BYTES = 16_777_216
"""The whole srcdoc; the host page holds it as one string per mounted frame."""
NONCE_PATTERN = re.compile(r"[A-Za-z0-9+/_-]{22,128}={0,2}")
"""base64 or base64url of at least 128 bits: what `secrets.token_urlsafe(16)` gives."""
LANGUAGE_PATTERN = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}")
HOST_ORIGIN_PATTERN = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?")
"""The page that mounts frames is Kumix's local server."""
MAX_THEME_TOKENS = 512
MAX_THEME_CHARS = 512
ALLOWED_SUFFIXES = {".js": "script", ".mjs": "script", ".css": "style"}


@dataclass(frozen=True)
class FrameDocument:
    """A frame ready to mount: the host page sets these on a fresh `<iframe>`."""

    srcdoc: str
    sandbox: str
    csp: str
    grant: FrameGrant
    referrer_policy: str = "no-referrer"
    allow: str = ""
    """Permissions policy: none (camera, microphone, geolocation, … all refused)."""


def _reader(extension_dir: Path):  # type: ignore[no-untyped-def]
    root = extension_dir.resolve()
    total = [0]

    def read(ref: str) -> str:
        if "\\" in ref or "?" in ref or "#" in ref or ":" in ref or ref.startswith("/"):
            raise ExtensionFailed(f"{ref!r} is not a path inside the extension (no URLs, queries or absolute paths)")
        relative = PurePosixPath(ref)
        if any(part in ("..", "") or part.startswith(".") for part in relative.parts):
            raise ExtensionFailed(f"{ref!r} is not a path inside the extension")
        if relative.suffix not in ALLOWED_SUFFIXES:
            raise ExtensionFailed(f"{ref!r}: only .js, .mjs and .css files are inlined into a frame")
        try:
            resolved = (root / relative).resolve(strict=True)
            info = resolved.stat()
        except (OSError, RuntimeError):
            raise ExtensionFailed(f"{ref!r} does not exist in the extension") from None
        if resolved != root and root not in resolved.parents:
            raise ExtensionFailed(f"{ref!r} leaves the extension directory")
        if not stat.S_ISREG(info.st_mode):
            raise ExtensionFailed(f"{ref!r} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ExtensionFailed(f"{ref!r} is larger than {MAX_FILE_BYTES} bytes")
        total[0] += info.st_size
        if total[0] > MAX_DOCUMENT_BYTES:
            raise ExtensionFailed(f"the extension's files add up to more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            return resolved.read_bytes()[: MAX_FILE_BYTES + 1].decode("utf-8")
        except UnicodeDecodeError:
            raise ExtensionFailed(f"{ref!r} is not UTF-8") from None

    return read


def read_entry(extension_dir: Path, manifest: Manifest) -> str:
    path = extension_dir / manifest.entry
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise ExtensionFailed(f"{manifest.entry!r} is not a regular file")
        if info.st_size > MAX_ENTRY_BYTES:
            raise ExtensionFailed(f"{manifest.entry!r} is larger than {MAX_ENTRY_BYTES} bytes")
        return path.read_bytes().decode("utf-8")
    except OSError:
        raise ExtensionFailed(f"{manifest.entry!r} cannot be read") from None
    except UnicodeDecodeError:
        raise ExtensionFailed(f"{manifest.entry!r} is not UTF-8") from None


def build_frame(
    *,
    extension_dir: Path,
    manifest: Manifest,
    policy: Policy,
    config: BootstrapConfig,
    script_nonce: str,
) -> FrameDocument:
    """The srcdoc document and iframe attributes for one mount of a UI extension."""
    if manifest.kind != "ui":
        raise BadRequest(f"{manifest.id!r} is a {manifest.kind} extension, not a UI extension")
    if NONCE_PATTERN.fullmatch(script_nonce) is None:
        raise BadRequest("the host page's script nonce must be base64 of at least 128 bits")
    if LANGUAGE_PATTERN.fullmatch(config.language) is None:
        raise BadRequest(f"{config.language[:40]!r} is not a language tag")
    if HOST_ORIGIN_PATTERN.fullmatch(config.host_origin) is None:
        raise BadRequest(f"{config.host_origin[:80]!r} is not the origin of a local Kumix page")
    if len(config.theme) > MAX_THEME_TOKENS or any(
        not isinstance(k, str) or not isinstance(v, str) or len(k) > MAX_THEME_CHARS or len(v) > MAX_THEME_CHARS
        for k, v in config.theme.items()
    ):
        raise BadRequest(f"theme tokens must be at most {MAX_THEME_TOKENS} strings of {MAX_THEME_CHARS} characters")
    grant = frame_grant(policy, manifest)
    csp = frame_csp(grant)
    cleaned = clean_to_fixpoint(read_entry(extension_dir, manifest), _reader(extension_dir))
    parts = FrameParts(csp=csp, bootstrap_js=bootstrap_script(config), script_nonce=script_nonce,
                       language=config.language)
    srcdoc = compose(cleaned, parts)
    if len(srcdoc.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise ExtensionFailed(f"the frame document is larger than {MAX_DOCUMENT_BYTES} bytes")
    return FrameDocument(srcdoc=srcdoc, sandbox=grant.sandbox_attribute, csp=csp, grant=grant)
