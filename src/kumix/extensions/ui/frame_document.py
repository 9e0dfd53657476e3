"""Building one frame document from a UI extension's directory.

Files are read only from inside the extension directory: the path is normalized and
resolved first and the containment checked after (two VS Code CVEs came from checking
before normalizing), and only regular files within the size bounds are read.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import threading
from collections import OrderedDict
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
MAX_TEMPLATES = 32
"""Composed and verified documents kept per process (one per extension version, CSP and
language): mermaid-viewer's 3.5 MB page takes seconds of parsing, a mount must not."""
SCRIPT_BREAKERS = re.compile(r"<!--|</?script", re.IGNORECASE)
"""What would end or change a script element's text in HTML (the builder refuses it in
extension scripts too)."""
MAX_TREE_FILES = 4096
"""Files of one extension directory looked at for the template key."""
_NONCE_TOKEN = "KxNonce" + secrets.token_hex(16)
_BOOTSTRAP_TOKEN = "/*KxBootstrap" + secrets.token_hex(16) + "*/"
"""Stand-ins composed into a cached template and replaced per mount. Random per process, so
no extension can put them into its own files; a count check guards the replacement anyway."""


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
    template = _template(extension_dir, manifest, csp, config.language)
    srcdoc = _fill(template, script_nonce, bootstrap_script(config))
    if len(srcdoc.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise ExtensionFailed(f"the frame document is larger than {MAX_DOCUMENT_BYTES} bytes")
    return FrameDocument(srcdoc=srcdoc, sandbox=grant.sandbox_attribute, csp=csp, grant=grant)


@dataclass(frozen=True)
class _Template:
    text: str
    nonces: int
    """How many times the nonce stand-in occurs: once per script and style."""


_templates: OrderedDict[tuple[object, ...], _Template] = OrderedDict()
_templates_lock = threading.Lock()


def _tree_signature(extension_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file of the extension by path, size and modification time: a change to any of
    them (the entry, a script, a stylesheet) makes a new template."""
    root = extension_dir.resolve()
    out: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                info = path.lstat()
            except OSError:
                continue
            out.append((str(path.relative_to(root)), info.st_size, info.st_mtime_ns))
            if len(out) > MAX_TREE_FILES:
                raise ExtensionFailed(f"the extension has more than {MAX_TREE_FILES} files")
    return tuple(out)


def _template(extension_dir: Path, manifest: Manifest, csp: str, language: str) -> _Template:
    """The cleaned, composed and verified document with stand-ins for the nonce and the
    bootstrap; built once per extension version, CSP and language."""
    entry = read_entry(extension_dir, manifest)
    key = (str(extension_dir.resolve()), manifest.id, manifest.entry, hashlib.sha256(entry.encode()).hexdigest(),
           _tree_signature(extension_dir), csp, language)
    with _templates_lock:
        cached = _templates.get(key)
        if cached is not None:
            _templates.move_to_end(key)
            return cached
    cleaned = clean_to_fixpoint(entry, _reader(extension_dir))
    if _NONCE_TOKEN in cleaned or _BOOTSTRAP_TOKEN in cleaned:
        raise ExtensionFailed("the entry document contains Kumix's stand-ins; refused")
    parts = FrameParts(csp=csp, bootstrap_js=_BOOTSTRAP_TOKEN, script_nonce=_NONCE_TOKEN, language=language)
    text = compose(cleaned, parts)
    if text.count(_BOOTSTRAP_TOKEN) != 1:
        raise ExtensionFailed("the frame document's bootstrap could not be placed; refused")
    made = _Template(text=text, nonces=text.count(_NONCE_TOKEN))
    with _templates_lock:
        _templates[key] = made
        while len(_templates) > MAX_TEMPLATES:
            _templates.popitem(last=False)
    return made


def _fill(template: _Template, nonce: str, bootstrap_js: str) -> str:
    """The template with this mount's nonce and bootstrap. Safe as plain replacement: the
    nonce is base64 (NONCE_PATTERN, checked), the bootstrap is Kumix's fixed program with
    script-safe JSON (no `<`, `>` or `&`, so it cannot end its script element), and both
    stand-ins sit where compose() put them, which verify() checked on the template."""
    if SCRIPT_BREAKERS.search(bootstrap_js) or NONCE_PATTERN.fullmatch(nonce) is None:
        raise BadRequest("a frame's bootstrap and nonce must be script-safe")
    text = template.text.replace(_BOOTSTRAP_TOKEN, bootstrap_js)
    filled = text.replace(_NONCE_TOKEN, nonce)
    if filled.count(nonce) < template.nonces:
        raise ExtensionFailed("the frame document's nonces could not be placed; refused")
    return filled
