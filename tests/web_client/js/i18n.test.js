import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { catalog, t, tn, loadLanguage, pickLanguage, interpolate, formatNumber } from "../../../src/kumix/web/client/lib/i18n.js";

const getJson = async (/** @type {URL} */ url) => JSON.parse(await readFile(url, "utf-8"));

test("the compiled catalogs' plural categories are the ones Intl.PluralRules picks from", async () => {
  for (const language of ["en", "ja"]) {
    const doc = await getJson(new URL(`../../../src/kumix/web/client/i18n/${language}.json`, import.meta.url));
    assert.deepEqual([...doc.plural_categories].sort(), [...new Intl.PluralRules(language).resolvedOptions().pluralCategories].sort());
  }
});

test("English and Japanese: messages, plurals and numbers follow the switch", async () => {
  await loadLanguage("en", getJson);
  assert.equal(t("Sign in"), "Sign in");
  assert.equal(tn("{count} unread message", "{count} unread messages", 1), "1 unread message");
  assert.equal(tn("{count} unread message", "{count} unread messages", 1200), "1,200 unread messages");
  await loadLanguage("ja", getJson);
  assert.equal(catalog.value.language, "ja");
  assert.equal(t("Sign in"), "サインイン");
  assert.equal(tn("{count} unread message", "{count} unread messages", 1), "未読メッセージ 1 件");
  assert.equal(t("Invited by {user}", { user: "@bob:x" }), "@bob:x さんからの招待");
  assert.equal(formatNumber(1200), "1,200");
});

test("an unknown message falls back to its English id, and a missing value stays visible", async () => {
  await loadLanguage("ja", getJson);
  assert.equal(t("Not in any catalog"), "Not in any catalog");
  assert.equal(interpolate("{a} and {b}", { a: "x" }), "x and {b}");
});

test("the browser's language picks a catalog, English otherwise", () => {
  assert.equal(pickLanguage("ja-JP"), "ja");
  assert.equal(pickLanguage("de-DE"), "en");
});
