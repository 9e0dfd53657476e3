"""The client's own code keeps to the page's rules: no inline script or style, no eval or
string-to-code sink, one Trusted Types policy, nothing loaded from another host."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "src/kumix/web/client"

# Each of these turns a string into code or markup outside the one policy.
SINKS = {
    "eval": re.compile(r"\beval\s*\("),
    "new Function": re.compile(r"\bnew\s+Function\b|\bFunction\s*\("),
    "string timer": re.compile(r"\bset(?:Timeout|Interval)\s*\(\s*[\"'`]"),
    "innerHTML": re.compile(r"\.(?:inner|outer)HTML\b"),
    "insertAdjacentHTML": re.compile(r"\binsertAdjacentHTML\b"),
    "document.write": re.compile(r"\bdocument\.write(?:ln)?\b"),
    "createContextualFragment": re.compile(r"\bcreateContextualFragment\b"),
    "DOMParser": re.compile(r"\bDOMParser\b"),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "remote URL": re.compile(r"\b(?:https?|wss?):\/\/(?!127\.0\.0\.1[:/]|localhost[:/])", re.I),
    "import map": re.compile(r"importmap", re.I),
}


FRAME_SINK = "iframe.srcdoc = frameDocument(mounted.srcdoc);"


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"(^|[^:\"'])//[^\n]*", r"\1", text)


def violations(name: str, text: str) -> list[str]:
    code = _strip_comments(text)
    found = [f"{name}: {label}" for label, pattern in SINKS.items() if pattern.search(code)]
    if "dangerouslySetInnerHTML" in code and not re.search(r"dangerouslySetInnerHTML=\$\{messageHtml\(", code):
        found.append(f"{name}: dangerouslySetInnerHTML without messageHtml")
    # The one srcdoc sink: a UI frame's server-built document through the one policy.
    if re.search(r"\bsrcdoc\b", code.replace(FRAME_SINK, "") if name == "bridge/mount.js" else code):
        found.append(f"{name}: srcdoc")
    if "createPolicy(" in code and name != "lib/trusted-html.js":
        found.append(f"{name}: a second Trusted Types policy")
    if re.search(r"\bstyle\s*=\s*[\"']", code):
        found.append(f"{name}: a style attribute in markup")
    return found


def own_js() -> dict[str, str]:
    return {p.relative_to(CLIENT).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(CLIENT.rglob("*.js")) if "vendor" not in p.parts}


def test_client_code_has_no_string_to_code_sink_and_loads_nothing_remote() -> None:
    files = own_js()
    assert "main.js" in files
    assert "views/timeline.js" in files
    assert [v for name, text in files.items() for v in violations(name, text)] == []


def test_exactly_one_policy_and_one_html_sink() -> None:
    files = own_js()
    assert sum(text.count("createPolicy(") for text in files.values()) == 1
    sinks = [name for name, text in files.items() if "dangerouslySetInnerHTML" in _strip_comments(text)]
    assert sinks == ["views/timeline.js"]


def test_the_check_catches_each_sink() -> None:
    samples = {
        "eval('1')": "eval", "new Function('x')": "new Function", "setTimeout('go()', 1)": "string timer",
        "el.innerHTML = s": "innerHTML", "el.insertAdjacentHTML('x', s)": "insertAdjacentHTML",
        "document.write(s)": "document.write", "frame.srcdoc = s": "srcdoc",
        "fetch('https://cdn.example/x.js')": "remote URL", "a.href = 'javascript:alert(1)'": "javascript: URL",
    }
    for code, label in samples.items():
        assert violations("views/x.js", code) == [f"views/x.js: {label}"], code
    assert violations("views/x.js", "html`<div dangerouslySetInnerHTML=${{__html: s}}></div>`") == [
        "views/x.js: dangerouslySetInnerHTML without messageHtml"]
    second = violations("views/x.js", "trustedTypes.createPolicy('x', {})")
    assert second == ["views/x.js: a second Trusted Types policy"]
    assert violations("views/x.js", 'html`<p style="color:red">`') == ["views/x.js: a style attribute in markup"]
    # Loopback is fine, and so is a comment that names a URL.
    assert violations("views/x.js", "// see https://example.org\nfetch('http://127.0.0.1:8008/')") == []


def test_index_html_has_no_inline_script_style_or_handler() -> None:
    page = (CLIENT / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, flags=re.S | re.I)
    assert scripts
    assert all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert all('type="module"' in attrs for attrs, _ in scripts)
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", page, flags=re.I)
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page, flags=re.I)
