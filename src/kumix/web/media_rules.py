"""How a file from a room is served, so that it can never run script in Kumix's origin.

Only PNG, JPEG, GIF and WebP are shown inline, and only when the bytes start like that
format (a file whose declared type lies is sent as an attachment). Everything else —
HTML, SVG, PDF, text, unknown — goes out as `application/octet-stream` with
`Content-Disposition: attachment`. Every answer carries `nosniff` and the sandbox CSP.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from kumix.web.headers import MEDIA_CSP

INLINE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and "WEBP" at offset 8, checked below
}


@dataclass(frozen=True)
class MediaAnswer:
    content_type: str
    headers: tuple[tuple[str, str], ...]
    inline: bool


def _looks_like(mimetype: str, data: bytes) -> bool:
    magics = INLINE_MAGIC.get(mimetype)
    if magics is None or not any(data.startswith(m) for m in magics):
        return False
    return mimetype != "image/webp" or data[8:12] == b"WEBP"


def sniffed_image_type(data: bytes) -> str | None:
    """The inline image type the bytes start like, for content with no declared type (a
    room avatar): the same magic check, so anything else is still an attachment."""
    return next((m for m in INLINE_MAGIC if _looks_like(m, data)), None)


def _ascii_name(name: str) -> str:
    kept = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\;' else "_" for c in name)
    return kept.strip() or "file"


def media_answer(declared_mimetype: str | None, name: str, data: bytes) -> MediaAnswer:
    mimetype = (declared_mimetype or "").split(";")[0].strip().lower()
    inline = _looks_like(mimetype, data)
    disposition = "inline" if inline else "attachment"
    # The name comes from the sender: quoted and filtered for the plain parameter, and
    # percent-encoded for filename* (RFC 6266), so it cannot add header parameters.
    disposition += f'; filename="{_ascii_name(name)}"; filename*=UTF-8\'\'{quote(name, safe="")}'
    headers = (
        ("content-disposition", disposition),
        ("content-security-policy", MEDIA_CSP),
        ("x-content-type-options", "nosniff"),
    )
    return MediaAnswer(mimetype if inline else "application/octet-stream", headers, inline)
