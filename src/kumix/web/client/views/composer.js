import { html } from "../lib/html.js";
import { t, formatBytes } from "../lib/i18n.js";

/** @param {{app: import("../vm/app.js").AppViewModel}} props */
export function Composer({ app }) {
  const vm = app.composer;
  const mode = vm.mode.value;
  /** @param {KeyboardEvent} e */
  const onKey = (e) => {
    const action = vm.keyAction(e);
    if (action === "send") { e.preventDefault(); void vm.submit(); }
    else if (action === "edit-last") { if (vm.editLast()) e.preventDefault(); }
    else if (action === "cancel") { e.preventDefault(); vm.cancel(); }
  };
  return html`<form class="composer" aria-label=${t("Message composer")} onSubmit=${(/** @type {Event} */ e) => { e.preventDefault(); void vm.submit(); }}>
    ${mode.kind !== "new" && html`<div class="mode small">
      <span>${mode.kind === "reply" ? t("Replying") : t("Editing")}</span>
      <button type="button" class="link" onClick=${() => vm.cancel()}>${t("Cancel")}</button></div>`}
    ${vm.uploads.value.map((u) => html`<div class="upload small" key=${u.id}>${u.name}
      <progress max=${u.size} value=${u.sent} aria-label=${t("Upload progress")}></progress> ${formatBytes(u.sent)} / ${formatBytes(u.size)}</div>`)}
    <div class="composer-row">
      <textarea rows="1" aria-label=${t("Message")} placeholder=${t("Write a message…")} value=${vm.text.value}
        onInput=${(/** @type {Event} */ e) => { vm.text.value = /** @type {HTMLTextAreaElement} */ (e.currentTarget).value; }} onKeyDown=${onKey}></textarea>
      <button class="primary" type="submit" disabled=${!vm.canSend.value}>${mode.kind === "edit" ? t("Save") : t("Send")}</button>
    </div>
    ${vm.error.value && html`<p class="error small" role="alert">${vm.error.value}</p>`}
  </form>`;
}
