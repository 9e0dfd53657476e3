// Search, settings and the extensions page.
import { html } from "../lib/html.js";
import { t, formatNumber, formatDateTime, LANGUAGES, catalog } from "../lib/i18n.js";

/**
 * The search index marks matches with [ and ]: odd parts are matches. Text, never HTML.
 * @param {string} snippet
 */
export function snippetParts(snippet) {
  return snippet.split(/\[([^\[\]]*)\]/);
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function SearchPage({ app }) {
  const vm = app.search;
  return html`<section class="page" aria-labelledby="search-title">
    <h1 id="search-title">${t("Search")}</h1>
    <form role="search" onSubmit=${(/** @type {Event} */ e) => { e.preventDefault(); void vm.run(); }}>
      <input type="search" aria-label=${t("Search messages")} placeholder=${t("Search messages")} value=${vm.query.value}
        onInput=${(/** @type {Event} */ e) => { vm.query.value = /** @type {HTMLInputElement} */ (e.currentTarget).value; }} />
      <button class="primary" type="submit">${t("Search")}</button>
    </form>
    ${vm.error.value && html`<p class="error" role="alert">${vm.error.value}</p>`}
    ${vm.searched.value && !vm.results.value.length && html`<p class="muted">${t("Nothing found.")}</p>`}
    <ul class="results">${vm.results.value.map((ev) => html`<li key=${ev.event_id}>
      <button class="result" onClick=${() => void app.openHit(ev)}>
        <span class="muted small">${app.rooms.byId.value.get(ev.room_id)?.name ?? ev.room_id} · ${ev.sender} · ${formatDateTime(ev.ts)}</span>
        <span>${snippetParts(ev.snippet).map((part, i) => (i % 2 ? html`<mark>${part}</mark>` : part))}</span></button></li>`)}</ul>
  </section>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel, onLanguage: (lang: "en" | "ja") => void}} props */
export function SettingsPage({ app, onLanguage }) {
  const choice = app.theme.choice.value;
  /** @type {Record<string, string>} */
  const names = { en: t("English"), ja: t("Japanese") };
  return html`<section class="page" aria-labelledby="settings-title">
    <h1 id="settings-title">${t("Settings")}</h1>
    <fieldset><legend>${t("Theme")}</legend>
      ${[["system", t("Follow the system")], ["light", t("Light")], ["dark", t("Dark")]].map(([value, label]) => html`<label key=${value}>
        <input type="radio" name="theme" value=${value} checked=${choice === value} onChange=${() => void app.setTheme(/** @type {"system" | "light" | "dark"} */ (value))} /> ${label}</label>`)}
    </fieldset>
    <fieldset><legend>${t("Language")}</legend>
      <select aria-label=${t("Language")} value=${catalog.value.language} onChange=${(/** @type {Event} */ e) => onLanguage(/** @type {"en" | "ja"} */ (/** @type {HTMLSelectElement} */ (e.currentTarget).value))}>
        ${LANGUAGES.map((l) => html`<option key=${l} value=${l}>${names[l]}</option>`)}
      </select>
    </fieldset>
    <h2>${t("Active policy")}</h2>
    <p class="muted small">${t("Read-only: the policy file decides what each extension may do.")}</p>
    <pre class="policy" tabindex="0" aria-label=${t("Active policy")}>${app.policy.value ? JSON.stringify(app.policy.value, null, 2) : t("Loading…")}</pre>
    <button onClick=${() => void app.logout()}>${t("Sign out")}</button>
  </section>`;
}

/** What a capability lets an extension do, in words; unknown ones show their name only. */
function capabilityText(/** @type {string} */ capability) {
  /** @type {Record<string, string>} */
  const known = {
    "render.markdown": t("Turn the markdown you write into formatted messages."),
    "render.mermaid": t("Draw diagrams from mermaid text."),
    "theme.tokens": t("Provide the colours and fonts of the page."),
    "room.context.read": t("Read the current room's name and recent messages."),
    "room.message.send": t("Send messages in the current room as you."),
    "room.navigate": t("Switch the page to another room."),
    "proc.call": t("Call Kumix's proc extensions."),
  };
  return known[capability] ?? "";
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function ExtensionsPage({ app }) {
  const rows = app.extensions.rows.value;
  /** @param {number | null} ms */
  const millis = (ms) => (ms === null ? "–" : t("{ms} ms", { ms: Math.round(ms * 10) / 10 }));
  /** @type {Record<string, string>} */
  const states = { enabled: t("Enabled"), disabled: t("Disabled"), denied: t("Denied"), invalid: t("Invalid") };
  return html`<section class="page" aria-labelledby="ext-title">
    <h1 id="ext-title">${t("Extensions")}</h1>
    ${rows.map(({ ext, name, bundled, enabled, figures, capabilities, ungranted, denied }) => html`<article class="extension card" key=${ext.id} aria-label=${name}>
      <header><strong>${name}</strong> <span class="muted small">${ext.id} ${ext.version ?? ""}</span>
        <span class="muted small">${bundled ? t("bundled") : t("external")}</span>
        <span class=${denied ? "state denied" : "state"}>${states[ext.state] ?? ext.state}</span></header>
      ${ext.reason && html`<p class=${denied ? "error small" : "muted small"}>${denied ? t("Denied by the policy: {reason}", { reason: ext.reason }) : ext.reason}</p>`}
      <ul class="capabilities small" aria-label=${t("Capabilities")}>${capabilities.map((c) => html`<li key=${c}><code>${c}</code> ${capabilityText(c)}
        ${ungranted.includes(c) && html`<button onClick=${() => void app.extensionAction(ext.id, "grant", c)}>${t("Grant")}</button>`}</li>`)}</ul>
      <dl class="figures small">
        <dt>${t("Calls")}</dt><dd>${formatNumber(figures.calls)}</dd>
        <dt>${t("Errors")}</dt><dd>${formatNumber(figures.errors)}</dd>
        <dt>${t("Timeouts")}</dt><dd>${formatNumber(figures.timeouts)}</dd>
        <dt>${t("Restarts")}</dt><dd>${formatNumber(figures.restarts)}</dd>
        <dt>${t("p50")}</dt><dd>${millis(figures.p50_ms)}</dd>
        <dt>${t("p99")}</dt><dd>${millis(figures.p99_ms)}</dd>
      </dl>
      ${ext.send_always_allowed && html`<p class="small">${t("Sends in your name without asking (you allowed it).")}
        <button onClick=${() => void app.extensionAction(ext.id, "revoke-send")}>${t("Ask before each send")}</button></p>`}
      ${ext.state !== "invalid" && html`<button onClick=${() => void app.extensionAction(ext.id, enabled ? "disable" : "enable")}>${enabled ? t("Disable") : t("Enable")}</button>`}
    </article>`)}
  </section>`;
}
