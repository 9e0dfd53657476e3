"""HTML sanitizing: the one module that imports nh3, and the allowlist every extension's
HTML passes through before any caller sees it.

The allowlist is what rendered chat text needs and nothing more:

- tags: paragraphs and line breaks, headings, emphasis (`strong`, `em`, `b`, `i`, `del`, `s`),
  inline and block code, quotes, lists, tables, horizontal rules, links;
- attributes: `href` and `title` on links; `style` on table cells, reduced to `text-align`
  (what markdown-it emits for column alignment; every other property is dropped);
  `start` on ordered lists; the class `mermaid` on `pre` (for the UI-side diagram renderer);
- link schemes: http, https, mailto; every link gets `rel="noopener noreferrer nofollow"`;
- `script`, `style`, `iframe`, `object`, `template` and similar are removed with their content.

Images are not allowed: a remote image in a message is a tracking pixel and a request to
an arbitrary host; media goes through the client's own media path instead. Event handler
attributes, `javascript:`/`data:` URLs, forms and embedded documents never pass.

Cost: the HTML5 tree builder behind nh3 is quadratic in the depth of the tree (each start tag
scans the stack of open elements) and in the number of attributes of one tag, so 64 KiB of
unclosed `<div>` costs about a second and the 4 MiB a strict policy lets a proc result carry
would hold the host's event loop for most of an hour. Input with more than `MAX_TAGS` tag
openings or more than `MAX_HTML_CHARS` characters is therefore not parsed at all: it comes back
as escaped text (every character kept, no markup), which costs one linear pass. Both bounds
are far above what a chat message needs (a Matrix event is at most 64 KiB, markdown-it nests
at most 100 levels) and keep the worst case around a tenth of a second.
"""

from __future__ import annotations

import html as html_module
import re

import nh3

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6",
        "strong", "em", "b", "i", "del", "s", "code", "pre", "blockquote",
        "ul", "ol", "li", "a",
        "table", "thead", "tbody", "tr", "th", "td",
    }
)
ALLOWED_ATTRIBUTES = {
    "a": frozenset({"href", "title"}),
    "th": frozenset({"style"}),
    "td": frozenset({"style"}),
    "ol": frozenset({"start"}),
}
ALLOWED_CLASSES = {"pre": frozenset({"mermaid"})}
ALLOWED_STYLE_PROPERTIES = frozenset({"text-align"})
URL_SCHEMES = frozenset({"http", "https", "mailto"})
REMOVED_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "template", "noscript", "svg", "math"}
)
LINK_REL = "noopener noreferrer nofollow"

_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
    allowed_classes={tag: set(classes) for tag, classes in ALLOWED_CLASSES.items()},
    filter_style_properties=set(ALLOWED_STYLE_PROPERTIES),
    url_schemes=set(URL_SCHEMES),
    clean_content_tags=set(REMOVED_WITH_CONTENT),
    link_rel=LINK_REL,
    strip_comments=True,
)


MAX_TAGS = 8_192
"""Tag openings (`<` then a letter) parsed at most; tree depth can only come from them."""
MAX_HTML_CHARS = 262_144
"""Characters parsed at most; bounds the attributes one tag can carry."""
_TAG_OPENING = re.compile(r"</?[A-Za-z]")


def _too_costly(html: str) -> bool:
    if len(html) > MAX_HTML_CHARS:
        return True
    # Stops at the first opening past the bound instead of counting them all.
    return any(count > MAX_TAGS for count, _ in enumerate(_TAG_OPENING.finditer(html), start=1))


def sanitize_html(html: str) -> str:
    """The allowlisted subset of `html`; safe to insert into the page. Input too costly to
    parse (see the module docstring) is returned as escaped text."""
    if _too_costly(html):
        return html_module.escape(html, quote=True)
    return _cleaner.clean(html)
