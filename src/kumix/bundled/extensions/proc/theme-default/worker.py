"""Default theme: the light and dark design token maps (CSS custom property values)."""

from __future__ import annotations

from typing import Any

from kumix.sdk import proc

LIGHT: dict[str, str] = {
    "color-bg": "#ffffff",
    "color-bg-alt": "#f4f5f7",
    "color-fg": "#1d1f23",
    "color-fg-muted": "#5c6370",
    "color-accent": "#0b6bcb",
    "color-accent-fg": "#ffffff",
    "color-border": "#d8dce3",
    "color-danger": "#c62828",
    "color-success": "#2e7d32",
    "color-link": "#0b6bcb",
    "color-code-bg": "#f0f2f5",
    "font-body": "system-ui, -apple-system, 'Segoe UI', sans-serif",
    "font-mono": "ui-monospace, 'SFMono-Regular', Menlo, monospace",
    "radius": "6px",
    "space-1": "4px",
    "space-2": "8px",
    "space-3": "16px",
}
DARK: dict[str, str] = {
    **LIGHT,
    "color-bg": "#15171b",
    "color-bg-alt": "#1e2126",
    "color-fg": "#e6e8eb",
    "color-fg-muted": "#9aa1ad",
    "color-accent": "#4c9aff",
    "color-accent-fg": "#0b1220",
    "color-border": "#2c313a",
    "color-danger": "#ef5350",
    "color-success": "#66bb6a",
    "color-link": "#6cb0ff",
    "color-code-bg": "#23272e",
}


@proc.handler("theme.tokens.provide")
def provide_tokens(params: dict[str, Any]) -> dict[str, Any]:
    return {"light": dict(LIGHT), "dark": dict(DARK)}
