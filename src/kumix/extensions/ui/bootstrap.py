"""The bootstrap script of a frame: its configuration as escaped JSON, in a fixed program.

The JSON sits inside a `<script>` of an HTML document, so besides being valid JavaScript it
must never contain `</script>`, `<!--` or `<script` (which change how HTML ends a script) or
U+2028/U+2029 (line terminators in older JavaScript): every `<`, `>`, `&` and non-ASCII
character is written as a `\\uXXXX` escape, which JSON and JavaScript read back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

PLACEHOLDER = "/*KUMIX_CONFIG*/"


@dataclass(frozen=True)
class BootstrapConfig:
    """`window.__KUMIX_UI_BOOTSTRAP__` of one mounted frame."""

    extension_id: str
    widget_id: str
    host_origin: str
    capabilities: Sequence[str]
    theme: Mapping[str, str]
    language: str

    def to_json(self) -> dict[str, object]:
        return {
            "extensionId": self.extension_id,
            "widgetId": self.widget_id,
            "hostOrigin": self.host_origin,
            "capabilities": list(self.capabilities),
            "theme": dict(self.theme),
            "language": self.language,
        }


def script_safe_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _program() -> str:
    text = resources.files("kumix.extensions.ui").joinpath("bootstrap.js").read_text(encoding="utf-8")
    assert text.count(PLACEHOLDER) == 1
    return text


def bootstrap_script(config: BootstrapConfig) -> str:
    return _program().replace(PLACEHOLDER, script_safe_json(config.to_json()))
