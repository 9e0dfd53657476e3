"""The extension's `entry.html`, cleaned into a frame document; the one home of html5lib.

An HTML5 parser (the algorithm browsers use, not regexes) reads the extension's page. What
could navigate, nest a browsing context or loosen the frame's CSP is removed; scripts and
styles move into `<head>`, with the host's nonce; the body keeps no raw-text element, so
no text of the extension can turn into markup when Chromium parses the result again, even
where html5lib and Chromium disagree about a tree (web.md: `<math><mtext><table><mglyph>
<style>` turned a style's text into a live meta refresh). One parse → clean → serialize
pass is not idempotent, so cleaning repeats until the output stops changing, and the final
document is parsed again and checked before it is handed out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from xml.dom import minidom

import html5lib
from html5lib.serializer import HTMLSerializer

from kumix.core.errors import ExtensionFailed

XHTML = "http://www.w3.org/1999/xhtml"
FRAME_ELEMENTS = frozenset({"iframe", "frame", "frameset", "object", "embed", "portal", "fencedframe"})
"""Elements that open a nested browsing context (a fresh realm with WebRTC back, web.md)."""
REMOVED_SUBTREES = frozenset({"noscript", "noembed", "noframes", "xmp", "plaintext", "template"})
"""Raw-text or inert containers where html5lib's tree and Chromium's disagree (html5lib parses
`noscript` with scripting off); a frame has scripts on, so their content never shows anyway.
`template` content would be a second, unchecked document inside the page."""
HEAD_KEPT = frozenset({"meta", "title"})
MAX_PASSES = 4
"""Cleaning converges in one or two passes on real pages; input still changing after four
passes is built to exploit a parser difference and is refused."""

SCRIPT_BREAKOUT = re.compile(r"</?script", re.IGNORECASE)
STYLE_BREAKOUT = re.compile(r"</style", re.IGNORECASE)

ReadFile = Callable[[str], str]
"""Reads a file of the extension by its relative path (the caller checks containment)."""


@dataclass(frozen=True)
class FrameParts:
    """What the builder puts first into `<head>`, ahead of anything of the extension."""

    csp: str
    bootstrap_js: str
    script_nonce: str
    language: str


def _parse(html: str) -> minidom.Document:
    document: minidom.Document = html5lib.parse(html, treebuilder="dom", namespaceHTMLElements=True)
    return document


def _serialize(document: minidom.Document) -> str:
    """Serialize with a plain `<!DOCTYPE html>`: whatever doctype the extension wrote,
    the frame is always in no-quirks mode."""
    for node in list(document.childNodes):
        if node.nodeType == node.DOCUMENT_TYPE_NODE:
            document.removeChild(node)
    walker = html5lib.getTreeWalker("dom")
    serializer = HTMLSerializer(
        quote_attr_values="always",
        omit_optional_tags=False,
        escape_lt_in_attrs=True,  # no attribute value can look like a tag to any parser
        minimize_boolean_attributes=False,
        use_trailing_solidus=False,
        resolve_entities=False,
        inject_meta_charset=False,
        alphabetical_attributes=True,
    )
    text: str = serializer.render(walker(document))
    return "<!DOCTYPE html>" + text


def _elements(node: minidom.Node) -> list[minidom.Element]:
    found: list[minidom.Element] = []
    stack = list(reversed(node.childNodes))
    while stack:  # iterative: a deeply nested page must not exhaust the recursion limit
        current = stack.pop()
        if current.nodeType == current.ELEMENT_NODE:
            found.append(current)
            stack.extend(reversed(current.childNodes))
    return found


def _local(element: minidom.Element) -> str:
    name: str = element.localName or element.tagName
    return name.lower()


def _html_part(document: minidom.Document, name: str) -> minidom.Element:
    root = document.documentElement
    for child in root.childNodes if root is not None else ():
        if isinstance(child, minidom.Element) and _local(child) == name:
            return child
    raise ExtensionFailed(f"entry document has no <{name}>")  # html5lib always makes one


def _detach(element: minidom.Element) -> None:
    parent = element.parentNode
    if parent is not None:
        parent.removeChild(element)


def _text(element: minidom.Element) -> str:
    return "".join(c.data for c in element.childNodes if c.nodeType == c.TEXT_NODE)


def _inline_source(element: minidom.Element, attribute: str, read_file: ReadFile) -> str | None:
    """The text of a file the element refers to (`<script src>`, `<link href>`), or None."""
    ref = element.getAttribute(attribute)
    if not ref:
        return None
    return read_file(ref)


def _clean_pass(html: str, read_file: ReadFile) -> str:
    document = _parse(html)
    head = _html_part(document, "head")
    body = _html_part(document, "body")
    _drop_comments(document)
    for element in _elements(document):
        if element.parentNode is None or _is_detached(element):
            continue
        name = _local(element)
        if name in FRAME_ELEMENTS or name in REMOVED_SUBTREES or name == "base":
            _detach(element)
        elif name == "meta" and element.hasAttribute("http-equiv"):
            _detach(element)  # a refresh navigates; a CSP of its own only confuses authors
        elif name == "link":
            _hoist_link(document, element, head, read_file)
        elif name in ("script", "style"):
            if element.namespaceURI != XHTML:
                _detach(element)  # svg/math script and style parse as markup: no raw text there
            else:
                _hoist(document, element, head, read_file)
    for element in [e for e in head.childNodes if e.nodeType == e.ELEMENT_NODE]:
        if _local(element) not in HEAD_KEPT | {"script", "style"}:
            _detach(element)
    del body  # the body keeps what is left: elements, attributes, escaped text
    return _serialize(document)


def _drop_comments(document: minidom.Document) -> None:
    """Comments serve no frame, and their text is the one raw text a body could still hold
    (`<!--<script>-->`, a `--!>` that ends early in one parser but not in another)."""
    stack: list[minidom.Document | minidom.Element] = [document]
    while stack:
        node = stack.pop()
        for child in list(node.childNodes):
            if isinstance(child, minidom.Comment):
                node.removeChild(child)
            elif isinstance(child, minidom.Element):
                stack.append(child)


def _is_detached(element: minidom.Element) -> bool:
    node: minidom.Node | None = element
    while node is not None and node.nodeType != node.DOCUMENT_NODE:
        node = node.parentNode
    return node is None


def _hoist_link(document: minidom.Document, element: minidom.Element, head: minidom.Element,
                read_file: ReadFile) -> None:
    rel = element.getAttribute("rel").lower().split()
    if "stylesheet" in rel:
        css = _inline_source(element, "href", read_file)
        if css is not None:
            style = document.createElementNS(XHTML, "style")
            style.appendChild(document.createTextNode(css))
            _check_raw_text(style, css)
            _detach(element)
            head.appendChild(style)
            return
    _detach(element)  # prefetch, preload, icon, manifest …: URL loads the CSP refuses anyway


def _hoist(document: minidom.Document, element: minidom.Element, head: minidom.Element,
           read_file: ReadFile) -> None:
    name = _local(element)
    source = _inline_source(element, "src", read_file) if name == "script" else None
    replacement = document.createElementNS(XHTML, name)
    if name == "script" and element.getAttribute("type").strip().lower() == "module":
        replacement.setAttribute("type", "module")
    elif name == "script" and element.hasAttribute("type"):
        replacement.setAttribute("type", element.getAttribute("type"))
    text = source if source is not None else _text(element)
    _check_raw_text(replacement, text)
    if text:
        replacement.appendChild(document.createTextNode(text))
    # Every other attribute goes: never a nonce of the extension's, never src/integrity.
    _detach(element)
    head.appendChild(replacement)


def _check_raw_text(element: minidom.Element, text: str) -> None:
    pattern = SCRIPT_BREAKOUT if _local(element) == "script" else STYLE_BREAKOUT
    if pattern.search(text):
        tag = _local(element)
        raise ExtensionFailed(
            f"a <{tag}> of the extension contains '<{tag}' or '</{tag}', which would end or nest it "
            "when the frame document is parsed; split the string (for example '<' + '/script')"
        )


def clean_to_fixpoint(html: str, read_file: ReadFile) -> str:
    """Clean the extension's page until a pass changes nothing; refuse if it never settles."""
    current = html
    for _ in range(MAX_PASSES):
        cleaned = _clean_pass(current, read_file)
        if cleaned == current:
            return cleaned
        current = cleaned
    raise ExtensionFailed(f"the entry document still changes after {MAX_PASSES} cleaning passes; refused")


def compose(cleaned: str, parts: FrameParts) -> str:
    """Put Kumix's CSP `<meta>` and the bootstrap first into `<head>`, nonce every script and
    style, and check the result by parsing it again."""
    document = _parse(cleaned)
    head = _html_part(document, "head")
    root = document.documentElement
    assert root is not None  # html5lib always makes <html>
    root.setAttribute("lang", parts.language)
    for element in _elements(head):
        if _local(element) in ("script", "style"):
            element.setAttribute("nonce", parts.script_nonce)
    meta = document.createElementNS(XHTML, "meta")
    meta.setAttribute("http-equiv", "Content-Security-Policy")
    meta.setAttribute("content", parts.csp)
    bootstrap = document.createElementNS(XHTML, "script")
    bootstrap.setAttribute("nonce", parts.script_nonce)
    bootstrap.appendChild(document.createTextNode(parts.bootstrap_js))
    head.insertBefore(bootstrap, head.firstChild)
    head.insertBefore(meta, bootstrap)
    result = _serialize(document)
    verify(result, parts)
    return result


def verify(result: str, parts: FrameParts) -> None:
    """Parse the finished document again: it must be its own fixpoint, start with Kumix's
    CSP and bootstrap, and hold no frame element, no other http-equiv, no base, and no
    script or style outside `<head>`."""
    document = _parse(result)
    again = _serialize(_parse(result))
    if again != result:
        raise ExtensionFailed("the frame document does not parse back to itself; refused")
    head = _html_part(document, "head")
    first = [c for c in head.childNodes if c.nodeType == c.ELEMENT_NODE][:2]
    if (
        len(first) != 2
        or _local(first[0]) != "meta"
        or first[0].getAttribute("http-equiv") != "Content-Security-Policy"
        or first[0].getAttribute("content") != parts.csp
        or _local(first[1]) != "script"
        or _text(first[1]) != parts.bootstrap_js
    ):
        raise ExtensionFailed("the frame document does not start with Kumix's CSP and bootstrap; refused")
    for element in _elements(document):
        name = _local(element)
        inside_head = element.parentNode is head
        if (
            name in FRAME_ELEMENTS
            or name == "base"
            or (name == "meta" and element.hasAttribute("http-equiv") and element is not first[0])
            or (name in ("script", "style") and not inside_head)
            or (name == "script" and element.hasAttribute("src"))
        ):
            raise ExtensionFailed(f"the frame document still holds a forbidden <{name}>; refused")
