"""Bundled proc extensions and the host-side result checks: the sanitizer under attack,
theme token validation, mermaid escaping — through real workers where it matters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumix.core.errors import BadRequest, ProtocolError
from kumix.extensions.policy import load_policy
from kumix.extensions.proc.host import ProcHost
from kumix.extensions.proc.results import MAX_TOKENS_PER_THEME, check_result
from kumix.extensions.registry import discover
from kumix.extensions.sanitize import sanitize_html


@pytest.fixture
async def bundled(tmp_path: Path) -> AsyncIterator[ProcHost]:
    async with ProcHost(load_policy("dev"), logs_dir=tmp_path / "logs") as host:
        yield host


async def call(host: ProcHost, extension_id: str, method: str, params: dict[str, object]) -> object:
    record = {r.id: r for r in discover()}[extension_id]
    assert record.manifest is not None
    async with asyncio.timeout(30):
        return await host.session(record.id, record.path, record.manifest).call(method, params)


ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<p onclick="alert(1)" onmouseover="alert(1)">x</p>',
    '<p style="background:url(javascript:alert(1))">x</p>',
    '<td style="position:fixed;top:0;left:0;width:100%">x</td>',
    "<style>body{display:none}</style>",
    '<iframe src="https://evil.example"></iframe>',
    '<svg><script>alert(1)</script></svg>',
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<form action="https://evil.example"><input name=x></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<!--<script>alert(1)</script>-->",
    '<pre class="mermaid evil">x</pre>',
    "<scr<script>ipt>alert(1)</script>",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_sanitizer_removes_active_content(attack: str) -> None:
    clean = sanitize_html(attack).lower()
    for needle in ("<script", "javascript:", "onerror", "onclick", "onmouseover", "<iframe", "<style",
                   "<svg", "<form", "<input", "<meta", "position", "data:text", "evil\"", "<!--"):
        assert needle not in clean, (attack, clean)


def test_sanitizer_keeps_what_chat_text_needs() -> None:
    html = (
        '<h2>T</h2><p><strong>b</strong> <em>i</em> <s>s</s> <code>c</code></p>'
        '<table><thead><tr><th style="text-align:right">h</th></tr></thead></table>'
        '<a href="https://matrix.org" title="m">l</a><pre class="mermaid">graph</pre>'
    )
    clean = sanitize_html(html)
    for kept in ("<h2>", "<strong>", "<em>", "<s>", "<code>", 'style="text-align:right"',
                 'href="https://matrix.org"', 'rel="noopener noreferrer nofollow"', '<pre class="mermaid">'):
        assert kept in clean


async def test_markdown_renderer_renders_gfm_subset_and_is_sanitized(bundled: ProcHost) -> None:
    source = "# Title\n\n~~old~~ **new** https://matrix.org\n\n| a | b |\n|--:|---|\n| 1 | 2 |\n\n<script>x</script>"
    result = await call(bundled, "markdown-renderer", "render.markdown", {"source": source})
    assert isinstance(result, dict)
    html = result["html"]
    assert "<h1>Title</h1>" in html
    assert "<s>old</s>" in html
    assert '<a href="https://matrix.org" rel="noopener noreferrer nofollow">' in html
    assert '<th style="text-align:right">a</th>' in html
    assert "<script>" not in html


async def test_markdown_renderer_rejects_bad_params(bundled: ProcHost) -> None:
    with pytest.raises(BadRequest):
        await call(bundled, "markdown-renderer", "render.markdown", {"source": 3})


async def test_mermaid_source_is_escaped_into_a_block(bundled: ProcHost) -> None:
    result = await call(bundled, "mermaid-renderer", "render.mermaid",
                        {"source": 'graph TD; A-->B</pre><script>alert(1)</script>"'})
    assert result == {
        "html": '<pre class="mermaid">graph TD; A--&gt;B&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"</pre>'
    }


async def test_theme_default_provides_valid_light_and_dark_tokens(bundled: ProcHost) -> None:
    result = await call(bundled, "theme-default", "theme.tokens.provide", {})
    assert isinstance(result, dict)
    assert set(result) == {"light", "dark"}
    assert result["light"]["color-bg"] != result["dark"]["color-bg"]


@pytest.mark.parametrize(
    "tokens",
    [
        {"light": {"Bad_Name": "red"}, "dark": {}},
        {"light": {"ok": "red; background: url(x)"}, "dark": {}},
        {"light": {"ok": "red}</style><script>"}, "dark": {}},
        {"light": {"ok": "\\3c script"}, "dark": {}},
        {"light": {"ok": "x" * 500}, "dark": {}},
        {"light": {f"t{i}": "1px" for i in range(MAX_TOKENS_PER_THEME + 1)}, "dark": {}},
        {"light": {"ok": 3}, "dark": {}},
        {"light": {}},
        {"light": {}, "dark": {}, "extra": {}},
    ],
)
def test_theme_token_validation_refuses_injection(tokens: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        check_result("theme.tokens.provide", tokens)


@pytest.mark.parametrize("bad", [{"html": 3}, {"html": "x", "more": 1}, "html", None])
def test_html_methods_require_the_html_shape(bad: object) -> None:
    with pytest.raises(ProtocolError):
        check_result("render.markdown", bad)
