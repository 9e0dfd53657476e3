"""The frame document: Kumix's CSP first, then the bootstrap, and nothing of the extension
that could navigate, nest a frame, loosen the CSP or turn text into markup."""

from __future__ import annotations

import json
import re
from pathlib import Path

import html5lib
import pytest

from kumix.core.errors import BadRequest, ExtensionFailed, InvalidManifest
from kumix.extensions.manifest import load_manifest, parse_manifest
from kumix.extensions.policy import load_policy, parse_policy
from kumix.extensions.ui.bootstrap import BootstrapConfig, bootstrap_script, script_safe_json
from kumix.extensions.ui.frame_document import build_frame
from kumix.extensions.ui.frame_policy import FORBIDDEN_SANDBOX_FLAGS, frame_csp, frame_grant
from kumix.extensions.ui.html_document import clean_to_fixpoint
from tests.ui_fixtures import NONCE, make_ui_extension, ui_manifest

CONFIG = BootstrapConfig(extension_id="probe", widget_id="W" * 22, host_origin="http://127.0.0.1:8765",
                         capabilities=["room.context.read"], theme={"bg": "#fff"}, language="en")


def build(tmp_path: Path, html: str, *, policy: str = "strict", config: BootstrapConfig = CONFIG,
          files: dict[str, str] | None = None, **manifest: object) -> str:
    ext_dir = make_ui_extension(tmp_path, "probe", html, files=files, **manifest)
    frame = build_frame(extension_dir=ext_dir, manifest=load_manifest(ext_dir), policy=load_policy(policy),
                        config=config, script_nonce=NONCE)
    return frame.srcdoc


def head_children(srcdoc: str) -> list[object]:
    doc = html5lib.parse(srcdoc, treebuilder="etree", namespaceHTMLElements=False)
    return list(doc.find("head"))


def all_tags(srcdoc: str) -> list[str]:
    doc = html5lib.parse(srcdoc, treebuilder="etree", namespaceHTMLElements=False)
    return [str(e.tag).rsplit("}", 1)[-1] for e in doc.iter()]


def manifest(**overrides: object) -> object:
    return parse_manifest(json.dumps(ui_manifest("probe", **overrides)).encode(), display="m.json")


# -- sandbox and egress --------------------------------------------------------------


def test_sandbox_is_policy_cap_intersected_with_the_manifest_ask() -> None:
    dev = load_policy("dev")  # allows scripts, forms, modals
    grant = frame_grant(dev, manifest(ui={"sandbox": ["allow-scripts", "allow-forms", "allow-popups"]}))
    assert grant.sandbox == ("allow-scripts", "allow-forms")  # popups: policy does not allow
    assert frame_grant(dev, manifest()).sandbox == ("allow-scripts",)  # no ask: scripts only
    assert frame_grant(load_policy("strict"), manifest(ui={"sandbox": ["allow-forms"]})).sandbox == ()


@pytest.mark.parametrize("flag", sorted(FORBIDDEN_SANDBOX_FLAGS))
def test_manifest_may_never_ask_for_an_escaping_sandbox_flag(flag: str) -> None:
    with pytest.raises(InvalidManifest) as info:
        manifest(ui={"sandbox": ["allow-scripts", flag]})
    assert info.value.details["pointer"] == "/ui/sandbox/1"


def test_escaping_flags_are_never_granted_even_if_a_policy_lists_them() -> None:
    doc = {"name": "loose", "capabilities": [], "ui": {"sandbox": ["allow-scripts", "allow-top-navigation",
                                                                    "allow-popups-to-escape-sandbox"]}}
    policy = parse_policy(json.dumps(doc).encode(), display="p.json")
    ask = manifest()
    object.__setattr__(ask, "ui", type(ask.ui_ask)(sandbox=("allow-scripts", "allow-top-navigation",
                                                            "allow-popups-to-escape-sandbox")))
    assert frame_grant(policy, ask).sandbox == ("allow-scripts",)


def test_connect_src_is_what_the_manifest_asks_and_the_policy_caps() -> None:
    asks = manifest(ui={"connectSrc": [
        {"source": "https://api.github.com", "reason": "issue titles"},
        {"source": "https://evil.example", "reason": "trust me"},
    ]})
    strict = frame_grant(load_policy("strict"), asks)
    assert strict.egress == ()
    assert [c.source for c in strict.refused_egress] == ["https://api.github.com", "https://evil.example"]
    assert "connect-src 'none'" in frame_csp(strict)
    assert "img-src data:;" in frame_csp(strict)
    doc = {"name": "gh", "capabilities": [], "ui": {"connectSrc": ["https://*.github.com"]}}
    policy = parse_policy(json.dumps(doc).encode(), display="p.json")
    grant = frame_grant(policy, asks)
    assert [(e.source, e.reason) for e in grant.egress] == [("https://api.github.com", "issue titles")]
    csp = frame_csp(grant)
    assert "connect-src https://api.github.com;" in csp
    assert "img-src data: https://api.github.com;" in csp
    # A policy that allows a source the manifest never asked for grants nothing.
    assert frame_grant(policy, manifest()).egress == ()


def test_manifest_connect_src_needs_a_reason_and_no_wildcard() -> None:
    with pytest.raises(InvalidManifest):
        manifest(ui={"connectSrc": [{"source": "https://api.github.com"}]})
    with pytest.raises(InvalidManifest):
        manifest(ui={"connectSrc": [{"source": "https://*.github.com", "reason": "x"}]})
    with pytest.raises(InvalidManifest):
        manifest(ui={"connectSrc": [{"source": "https://a.b; script-src *", "reason": "x"}]})


def test_proc_manifest_may_not_carry_ui_settings() -> None:
    from tests.governance_fixtures import proc_manifest

    doc = proc_manifest("echo", ui={"sandbox": ["allow-scripts"]})
    with pytest.raises(InvalidManifest):
        parse_manifest(json.dumps(doc).encode(), display="m.json")


def test_csp_denies_by_default_and_names_the_directives_without_fallback() -> None:
    csp = frame_csp(frame_grant(load_policy("strict"), manifest()))
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'unsafe-inline'"  # no source list: no URL ever loads
    assert directives["form-action"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["child-src"] == "'none'"
    assert directives["trusted-types"] == "default"  # no allow-duplicates: the bootstrap's alone
    assert directives["require-trusted-types-for"] == "'script'"
    assert "nonce" not in csp


# -- the document --------------------------------------------------------------------


def test_csp_meta_comes_first_then_the_bootstrap(tmp_path: Path) -> None:
    srcdoc = build(tmp_path, "<!doctype html><html><head><title>t</title><script>var early = 1</script>"
                   "</head><body><p>hi</p></body></html>")
    head = head_children(srcdoc)
    assert head[0].tag == "meta"
    assert head[0].get("http-equiv") == "Content-Security-Policy"
    assert head[0].get("content").startswith("default-src 'none'")
    assert head[1].tag == "script"
    assert "__KUMIX_UI_BOOTSTRAP__" in head[1].text
    assert head[1].get("nonce") == NONCE
    scripts = [e for e in head if e.tag == "script"]
    assert [s.get("nonce") for s in scripts] == [NONCE, NONCE]
    assert scripts[1].text == "var early = 1"


def test_every_meta_http_equiv_of_the_extension_is_removed(tmp_path: Path) -> None:
    srcdoc = build(tmp_path, '<meta http-equiv="refresh" content="0;url=https://evil.example/">'
                   '<META HTTP-EQUIV="Content-Security-Policy" content="default-src *">'
                   '<svg><meta http-equiv="refresh" content="0;url=https://evil.example/"></svg>'
                   '<meta name="viewport" content="width=device-width">')
    assert "evil.example" not in srcdoc
    assert srcdoc.lower().count("http-equiv") == 1  # Kumix's own CSP only
    assert 'name="viewport"' in srcdoc


@pytest.mark.parametrize("tag", ["iframe", "frame", "object", "embed", "portal", "fencedframe"])
def test_frame_elements_are_removed_everywhere(tmp_path: Path, tag: str) -> None:
    srcdoc = build(tmp_path, f'<p><{tag} src="https://evil.example/"></{tag}></p>'
                   f'<template><{tag} srcdoc="x"></{tag}></template><svg><{tag}></{tag}></svg>')
    assert tag not in all_tags(srcdoc)
    assert "evil.example" not in srcdoc


def test_base_link_and_noscript_are_removed(tmp_path: Path) -> None:
    srcdoc = build(tmp_path, '<base href="https://evil.example/"><link rel="prefetch" href="https://evil.example/p">'
                   '<noscript><style></noscript><img src="https://evil.example/n"></style></noscript>')
    assert "evil.example" not in srcdoc
    assert {"base", "link", "noscript"}.isdisjoint(all_tags(srcdoc))


def test_parser_differential_cannot_turn_style_text_into_markup(tmp_path: Path) -> None:
    # web.md: this turned a style's text into a live meta refresh after one more parse.
    attack = ('<math><mtext><table><mglyph><style><img src=x><meta http-equiv="refresh" '
              'content="0;url=https://evil.example/"></style></mglyph></table></mtext></math>'
              '<svg><style><img src="https://evil.example/s"></style><script>alert(1)</script></svg>')
    srcdoc = build(tmp_path, attack)
    body = srcdoc.split("<body", 1)[1]
    assert "<style" not in body
    assert "<script" not in body
    # What is left of the refresh is CSS text of a style in <head>, where every parser
    # reads raw text up to </style>: no element carries it.
    tags = all_tags(srcdoc)
    assert tags.count("meta") == 1
    styles = [e for e in head_children(srcdoc) if e.tag == "style"]
    assert any("refresh" in (s.text or "") for s in styles)


def test_scripts_and_styles_move_into_head_with_the_nonce_and_lose_their_attributes(tmp_path: Path) -> None:
    srcdoc = build(tmp_path, '<body><script nonce="attacker" integrity="x" async>var a = 1</script>'
                   '<style nonce="attacker">p{color:red}</style><script src="app.js" type="module"></script>'
                   '<link rel="stylesheet" href="s.css"></body>', files={"app.js": "var b = 2", "s.css": "b{x:y}"})
    head = head_children(srcdoc)
    kinds = [(e.tag, (e.text or "")) for e in head[2:]]
    assert kinds == [("script", "var a = 1"), ("style", "p{color:red}"), ("script", "var b = 2"), ("style", "b{x:y}")]
    for element in head[1:]:
        assert element.get("nonce") == NONCE
        assert element.get("src") is None
        assert element.get("integrity") is None
    assert head[4].get("type") == "module"
    assert "attacker" not in srcdoc


@pytest.mark.parametrize("ref", ["https://evil.example/x.js", "//evil.example/x.js", "../outside.js", "/etc/passwd.js",
                                 "data:text/javascript,1", "x.js?v=1", ".hidden.js", "notes.txt"])
def test_script_src_must_be_a_file_inside_the_extension(tmp_path: Path, ref: str) -> None:
    (tmp_path / "outside.js").write_text("alert(1)")
    with pytest.raises(ExtensionFailed):
        build(tmp_path, f'<script src="{ref}"></script>', files={"notes.txt": "x", ".hidden.js": "x"})


def test_symlink_out_of_the_extension_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.js"
    secret.write_text("leak")
    ext_dir = make_ui_extension(tmp_path / "root", "probe", '<script src="lib/x.js"></script>')
    (ext_dir / "lib").mkdir()
    (ext_dir / "lib" / "x.js").symlink_to(secret)
    with pytest.raises(ExtensionFailed, match="leaves"):
        build_frame(extension_dir=ext_dir, manifest=load_manifest(ext_dir), policy=load_policy("strict"),
                    config=CONFIG, script_nonce=NONCE)


@pytest.mark.parametrize("text", ["var s = '</script><script>alert(1)//'", "var s = '<!--<script>'",
                                  "var s = '</SCRIPT >'"])
def test_inlined_script_that_would_end_or_nest_its_element_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ExtensionFailed, match="script"):
        build(tmp_path, '<script src="x.js"></script>', files={"x.js": text})


def test_inline_comment_script_trick_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExtensionFailed):
        build(tmp_path, "<script><!--<script></script>alert(1)</script>")


def test_fake_bootstrap_in_extension_html_stays_after_the_real_one(tmp_path: Path) -> None:
    fake = "<script>window.__KUMIX_UI_BOOTSTRAP__ = {widgetId: 'forged'}</script>"
    srcdoc = build(tmp_path, f"<head>{fake}</head>")
    head = head_children(srcdoc)
    assert "forged" not in head[1].text
    assert "forged" in head[2].text
    # The real one defines the global read-only and non-configurable before any other script.
    assert "writable: false" in head[1].text
    assert "configurable: false" in head[1].text


def test_bootstrap_json_is_script_safe() -> None:
    nasty = BootstrapConfig(extension_id="probe", widget_id="W" * 22, host_origin="http://127.0.0.1:1",
                            capabilities=[], theme={"x": "</script><!--<script>\u2028\u2029&"}, language="en")
    script = bootstrap_script(nasty)
    for bad in ("</script", "<!--", "<script", "\u2028", "\u2029"):
        assert bad not in script
    literal = script_safe_json(nasty.to_json())
    assert json.loads(literal)["theme"]["x"] == "</script><!--<script>\u2028\u2029&"


def test_bootstrap_removes_webrtc_xslt_and_frame_constructors() -> None:
    script = bootstrap_script(CONFIG)
    for name in ("RTCPeerConnection", "webkitRTCPeerConnection", "RTCDataChannel", "RTCIceCandidate",
                 "XSLTProcessor", "HTMLIFrameElement", "HTMLObjectElement", "HTMLEmbedElement"):
        assert f'"{name}"' in script
    for hooked in ("createElement", "createElementNS", "createDocument", "execCommand", "responseXML"):
        assert f'"{hooked}"' in script


def test_cleaning_reaches_a_fixpoint_and_the_result_parses_back_to_itself(tmp_path: Path) -> None:
    samples = [
        "<p>a<b>b<i>c</b>d</i></p><table><tr><td>x<p>y</table>",
        "<math><mtext><table><mglyph><style>x</style></mglyph></table></mtext></math>",
        "<select><option>a<iframe>b</select><form><form><p>",
        '<a href="x" title="</a><img>">t</a><svg><foreignObject><p>x</p></foreignObject></svg>',
    ]
    for index, sample in enumerate(samples):
        cleaned = clean_to_fixpoint(sample, lambda ref: "")
        assert clean_to_fixpoint(cleaned, lambda ref: "") == cleaned
        build(tmp_path / str(index), sample)  # verify() reparses; raising would fail the test


def test_attribute_values_cannot_look_like_tags(tmp_path: Path) -> None:
    srcdoc = build(tmp_path, '<p title="</p><iframe src=https://evil.example>">x</p>')
    assert re.search(r"<iframe", srcdoc) is None


def test_bad_nonce_language_and_kind_are_bad_requests(tmp_path: Path) -> None:
    ext_dir = make_ui_extension(tmp_path, "probe", "<p>x</p>")
    args = {"extension_dir": ext_dir, "manifest": load_manifest(ext_dir), "policy": load_policy("strict")}
    with pytest.raises(BadRequest):
        build_frame(**args, config=CONFIG, script_nonce="short")
    with pytest.raises(BadRequest):
        build_frame(**args, config=CONFIG, script_nonce=NONCE + '" onload="x')
    bad_lang = BootstrapConfig(**{**CONFIG.__dict__, "language": 'en"><script>'})
    with pytest.raises(BadRequest):
        build_frame(**args, config=bad_lang, script_nonce=NONCE)
    for origin in ("https://evil.example", "http://127.0.0.1.evil.example", "null", "*"):
        with pytest.raises(BadRequest):
            build_frame(**args, config=BootstrapConfig(**{**CONFIG.__dict__, "host_origin": origin}),
                        script_nonce=NONCE)
    with pytest.raises(BadRequest):
        build_frame(**args, config=BootstrapConfig(**{**CONFIG.__dict__, "theme": {"x": "y" * 10_000}}),
                    script_nonce=NONCE)


def test_oversized_entry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExtensionFailed, match="larger"):
        build(tmp_path, "<p>" + "x" * 1_100_000 + "</p>")


def test_comments_are_removed_so_no_raw_text_is_left(tmp_path: Path) -> None:
    srcdoc = build(tmp_path, "<math><!--<script>--></math><p><!-- --!><iframe> --></p>")
    assert "<!--" not in srcdoc
    assert "iframe" not in all_tags(srcdoc)


# -- the per-extension template ------------------------------------------------------


def test_each_mount_fills_the_cached_template_with_its_own_nonce_and_bootstrap(tmp_path: Path) -> None:
    ext_dir = make_ui_extension(tmp_path, "probe", "<p>hi</p><script>var a = 1</script><style>p{}</style>")
    other = BootstrapConfig(extension_id="probe", widget_id="X" * 22, host_origin="http://127.0.0.1:8765",
                            capabilities=[], theme={}, language="en")
    first = build_frame(extension_dir=ext_dir, manifest=load_manifest(ext_dir), policy=load_policy("strict"),
                        config=CONFIG, script_nonce=NONCE).srcdoc
    second = build_frame(extension_dir=ext_dir, manifest=load_manifest(ext_dir), policy=load_policy("strict"),
                         config=other, script_nonce="B" * 22).srcdoc
    assert first.count(f'nonce="{NONCE}"') == 3  # the bootstrap, the script, the style
    assert second.count('nonce="' + "B" * 22 + '"') == 3
    assert NONCE not in second
    assert "W" * 22 not in second
    assert "X" * 22 in second
    assert "KxNonce" not in second
    assert "KxBootstrap" not in second
    assert head_children(second)[1].get("nonce") == "B" * 22


def test_a_changed_file_makes_a_new_template(tmp_path: Path) -> None:
    ext_dir = make_ui_extension(tmp_path, "probe", '<p>hi</p><script src="app.js"></script>',
                                files={"app.js": "var version = 1"})
    args = {"manifest": load_manifest(ext_dir), "policy": load_policy("strict"), "config": CONFIG,
            "script_nonce": NONCE}
    assert "var version = 1" in build_frame(extension_dir=ext_dir, **args).srcdoc  # type: ignore[arg-type]
    (ext_dir / "app.js").write_text("var version = 22")
    assert "var version = 22" in build_frame(extension_dir=ext_dir, **args).srcdoc  # type: ignore[arg-type]
    (ext_dir / "app.js").write_text("</script><script>alert(1)")
    with pytest.raises(ExtensionFailed):
        build_frame(extension_dir=ext_dir, **args)  # type: ignore[arg-type]
