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
"""

from __future__ import annotations

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


def sanitize_html(html: str) -> str:
    """The allowlisted subset of `html`; safe to insert into the page."""
    return _cleaner.clean(html)
