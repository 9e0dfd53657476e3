// Messages from the gettext catalogs compiled to JSON (scripts/i18n-web), plural forms picked
// with Intl.PluralRules (never a Plural-Forms expression compiled with new Function: the CSP
// forbids it), and dates and numbers through Intl. One catalog is current; views read it
// through a signal, so switching the language re-renders them.
import { signal } from "../vendor/signals-core.js";

/** @typedef {Record<string, string | Record<string, string>>} Messages */
/**
 * @typedef {object} Catalog
 * @property {string} language  BCP 47 tag of the catalog
 * @property {Messages} messages  msgid → text, or msgid → {CLDR plural category → text}
 */

export const LANGUAGES = /** @type {const} */ (["en", "ja"]);
/** @typedef {typeof LANGUAGES[number]} Language */

/** @type {Catalog} */
const EMPTY = { language: "en", messages: {} };

/** The current catalog; views read it (through t/tn) and so follow a switch. */
export const catalog = signal(EMPTY);

/** @param {string} tag @returns {Language} */
export function pickLanguage(tag) {
  const base = tag.toLowerCase().split("-")[0];
  return /** @type {readonly string[]} */ (LANGUAGES).includes(base) ? /** @type {Language} */ (base) : "en";
}

/**
 * Replace `{name}` placeholders; a missing value leaves the placeholder visible, so a
 * catalog mistake shows instead of silently dropping words.
 * @param {string} text @param {Record<string, string | number>} [vars]
 */
export function interpolate(text, vars) {
  if (!vars) return text;
  return text.replace(/\{([a-z_]+)\}/g, (whole, name) => {
    const value = vars[name];
    if (value === undefined) return whole;
    return typeof value === "number" ? formatNumber(value) : value;
  });
}

/**
 * The translation of msgid (the English text), or msgid itself when the catalog lacks it.
 * @param {string} msgid @param {Record<string, string | number>} [vars]
 */
export function t(msgid, vars) {
  const found = catalog.value.messages[msgid];
  return interpolate(typeof found === "string" && found ? found : msgid, vars);
}

/**
 * The plural form for n. `{count}` is always available to the text.
 * @param {string} singular @param {string} plural @param {number} n
 * @param {Record<string, string | number>} [vars]
 */
export function tn(singular, plural, n, vars) {
  const cat = catalog.value;
  const forms = cat.messages[singular];
  const category = new Intl.PluralRules(cat.language).select(n);
  let text = n === 1 ? singular : plural;
  if (forms && typeof forms === "object") text = forms[category] ?? forms.other ?? text;
  return interpolate(text, { count: n, ...vars });
}

/** @param {number} n */
export function formatNumber(n) {
  return new Intl.NumberFormat(catalog.value.language).format(n);
}

/** @param {number} ts  milliseconds since the epoch */
export function formatTime(ts) {
  return new Intl.DateTimeFormat(catalog.value.language, { hour: "numeric", minute: "2-digit" }).format(ts);
}

/** @param {number} ts */
export function formatDay(ts) {
  return new Intl.DateTimeFormat(catalog.value.language, { dateStyle: "full" }).format(ts);
}

/** @param {number} ts */
export function formatDateTime(ts) {
  return new Intl.DateTimeFormat(catalog.value.language, { dateStyle: "medium", timeStyle: "short" }).format(ts);
}

/** @param {number} bytes */
export function formatBytes(bytes) {
  const units = /** @type {const} */ (["byte", "kilobyte", "megabyte", "gigabyte"]);
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return new Intl.NumberFormat(catalog.value.language, {
    style: "unit", unit: units[unit], unitDisplay: "short", maximumFractionDigits: unit ? 1 : 0,
  }).format(value);
}

/**
 * Fetch and switch to a language's catalog; the document's lang follows.
 * @param {Language} language @param {(url: URL) => Promise<unknown>} getJson
 */
export async function loadLanguage(language, getJson) {
  const doc = /** @type {Catalog} */ (await getJson(new URL(`../i18n/${language}.json`, import.meta.url)));
  catalog.value = { language: doc.language, messages: doc.messages };
  if (typeof document !== "undefined") document.documentElement.lang = doc.language;
}
