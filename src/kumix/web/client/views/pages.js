// Search, settings and the extensions page.
import { html } from "../lib/html.js";
import { t, formatNumber, formatDateTime, LANGUAGES, catalog } from "../lib/i18n.js";

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
      <button class="result" onClick=${() => { app.rooms.select(ev.room_id); app.show("rooms"); }}>
        <span class="muted small">${app.rooms.byId.value.get(ev.room_id)?.name ?? ev.room_id} · ${formatDateTime(ev.ts)}</span>
        <span>${ev.body}</span></button></li>`)}</ul>
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
    <pre class="policy">${app.policy.value ? JSON.stringify(app.policy.value, null, 2) : t("Loading…")}</pre>
    <button onClick=${() => void app.logout()}>${t("Sign out")}</button>
  </section>`;
}

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function ExtensionsPage({ app }) {
  const rows = app.extensions.rows.value;
  /** @param {number | null} ms */
  const millis = (ms) => (ms === null ? "–" : t("{ms} ms", { ms: formatNumber(Math.round(ms * 10) / 10) }));
  return html`<section class="page" aria-labelledby="ext-title">
    <h1 id="ext-title">${t("Extensions")}</h1>
    ${rows.map(({ ext, figures, ungranted, denied }) => html`<article class="extension card" key=${ext.id} aria-label=${ext.name}>
      <header><strong>${ext.name}</strong> <span class="muted small">${ext.id} ${ext.version ?? ""}</span>
        <span class=${denied ? "state denied" : "state"}>${ext.enabled ? t("Enabled") : t("Disabled")}</span></header>
      ${ext.description && html`<p>${ext.description}</p>`}
      ${ext.reason && html`<p class="error small">${t("Denied by the policy: {reason}", { reason: ext.reason })}</p>`}
      <p class="small">${t("Capabilities")}: ${ext.capabilities.map((c) => html`<code key=${c}>${c}</code> `)}</p>
      ${ungranted.length > 0 && html`<p class="small">${t("Not granted yet")}: ${ungranted.map((c) => html`<code key=${c}>${c}</code> `)}</p>`}
      <dl class="figures small">
        <dt>${t("Calls")}</dt><dd>${formatNumber(figures.calls)}</dd>
        <dt>${t("Errors")}</dt><dd>${formatNumber(figures.errors)}</dd>
        <dt>${t("Timeouts")}</dt><dd>${formatNumber(figures.timeouts)}</dd>
        <dt>${t("Restarts")}</dt><dd>${formatNumber(figures.restarts)}</dd>
        <dt>${t("p50")}</dt><dd>${millis(figures.p50_ms)}</dd>
        <dt>${t("p99")}</dt><dd>${millis(figures.p99_ms)}</dd>
      </dl>
      <button onClick=${() => void app.api.send(`/api/extensions/${encodeURIComponent(ext.id)}/${ext.enabled ? "disable" : "enable"}`, {}).then(() => app.show("extensions"))}>
        ${ext.enabled ? t("Disable") : t("Enable")}</button>
      ${!ext.bundled && ungranted.length > 0 && html`<button onClick=${() => void app.api.send(`/api/extensions/${encodeURIComponent(ext.id)}/grant`, {}).then(() => app.show("extensions"))}>${t("Grant")}</button>`}
    </article>`)}
  </section>`;
}
