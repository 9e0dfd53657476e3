"""The web client's catalogs: complete, compiled, and the only source of user-visible text."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from babel import Locale
from babel.messages.plurals import get_plural

from tests.web_client.strings_scan import hard_coded

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "src/kumix/web/client"


def _script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("i18n_web", str(ROOT / "scripts/i18n-web"))
    spec = importlib.util.spec_from_loader("i18n_web", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


I18N = _script()
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@pytest.mark.parametrize("language", I18N.LANGUAGES)
def test_committed_json_is_the_compiled_catalog(language: str) -> None:
    committed = (CLIENT / "i18n" / f"{language}.json").read_text(encoding="utf-8")
    assert committed == I18N.render(I18N.compile_catalog(language)), "run scripts/i18n-web"


@pytest.mark.parametrize("language", I18N.LANGUAGES)
def test_catalog_holds_exactly_the_messages_the_client_uses(language: str) -> None:
    used = {m.id for m in I18N.extract() if m.id}
    known = {m.id for m in I18N.read(language) if m.id}
    assert used - known == set(), "run scripts/i18n-web --extract"
    assert known - used == set(), "obsolete messages: run scripts/i18n-web --extract"


def test_every_call_takes_a_literal_so_extraction_misses_nothing() -> None:
    for path in I18N.source_files():
        _, bad = I18N.messages_in(path.read_text(encoding="utf-8"))
        assert bad == [], f"{path.name}: t()/tn() with a non-literal id on lines {bad}"
    _, bad = I18N.messages_in('t(name); tn("a", other, n); t(`x`)')
    assert bad == [1, 1, 1]


def test_japanese_is_complete_and_keeps_every_placeholder() -> None:
    for message in I18N.read("ja"):
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"untranslated: {ids[0]!r}"
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == wanted, f"{ids[0]!r} → {text!r}"


@pytest.mark.parametrize("language", I18N.LANGUAGES)
def test_plural_forms_header_and_categories_agree_with_cldr(language: str) -> None:
    catalog = I18N.read(language)
    expected = get_plural(language)
    assert catalog.plural_forms == expected.plural_forms
    categories = json.loads((CLIENT / "i18n" / f"{language}.json").read_text())["plural_categories"]
    assert len(categories) == expected.num_plurals
    assert set(categories) == set(Locale.parse(language).plural_form.tags) | {"other"}


def test_views_have_no_hard_coded_user_visible_text() -> None:
    views = sorted((CLIENT / "views").glob("*.js"))
    assert views
    found = {p.name: hard_coded(p.read_text(encoding="utf-8")) for p in views}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_scan_catches_hard_coded_text() -> None:
    # Each of these slips past a view review; the scan must flag every one.
    assert hard_coded('html`<p>Hello</p>`') == ["Hello"]
    assert hard_coded('html`<button aria-label="Close">×</button>`') == ['aria-label="Close"']
    nested = 'html`<div>${ok && html`<span title=\'Tip\'>${t("x")} items</span>`}</div>`'
    assert hard_coded(nested) == ["title='Tip'", "items"]
    assert hard_coded('html`<input placeholder=Search />`') == ["placeholder=Search"]
    # What is allowed: catalog calls, symbols without letters, class names and ids.
    assert hard_coded('html`<p class="muted" id="x">${t("Hello")} · ${n} → ×</p>`') == []
    assert hard_coded('const s = "plain JS string"; html`<b>${s}</b>`') == []
