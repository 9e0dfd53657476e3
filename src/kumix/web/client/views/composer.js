import { html } from "../lib/html.js";
import { Icon } from "./icons.js";
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
  /** Pasted or dropped files and images are uploaded; pasted text stays text. @param {ClipboardEvent} e */
  const onPaste = (e) => {
    const files = [...(e.clipboardData?.files ?? [])];
    if (!files.length) return;
    e.preventDefault();
    for (const f of files) void app.attach(f);
  };
  /** @param {DragEvent} e */
  const onDrop = (e) => {
    const files = [...(e.dataTransfer?.files ?? [])];
    if (!files.length) return;
    e.preventDefault();
    for (const f of files) void app.attach(f);
  };
  return html`<form class="composer" onDragOver=${(/** @type {DragEvent} */ e) => e.preventDefault()} onDrop=${onDrop} aria-label=${t("Message composer")} onSubmit=${(/** @type {Event} */ e) => { e.preventDefault(); void vm.submit(); }}>
    ${mode.kind !== "new" && html`<div class="mode small">
      <span>${mode.kind === "reply" ? t("Replying") : t("Editing")}</span>
      <button type="button" class="link" onClick=${() => vm.cancel()}>${t("Cancel")}</button></div>`}
    ${vm.uploads.value.map((u) => html`<div class="upload small" key=${u.id}>${u.name}
      <progress max=${u.size} value=${u.sent} aria-label=${t("Upload progress")}></progress> ${formatBytes(u.sent)} / ${formatBytes(u.size)}
      ${u.state === "failed" && html`<span class="error">${t("Upload failed.")} ${u.error ?? ""}</span> <button type="button" class="link" onClick=${() => vm.dismissUpload(u.id)}>${t("Dismiss")}</button>`}</div>`)}
    <div class="composer-row">
      <textarea rows="1" aria-label=${t("Message")} placeholder=${t("Write a message…")} value=${vm.text.value}
        onInput=${(/** @type {Event} */ e) => { vm.text.value = /** @type {HTMLTextAreaElement} */ (e.currentTarget).value; app.typingNotice(!!vm.text.value); }}
        onKeyDown=${onKey} onPaste=${onPaste}></textarea>
      <label class="button icon attach" title=${t("Attach a file")}><${Icon} name="attach" /><input type="file" multiple class="visually-hidden" aria-label=${t("Attach a file")}
        onChange=${(/** @type {Event} */ e) => { const input = /** @type {HTMLInputElement} */ (e.currentTarget); for (const f of input.files ?? []) void app.attach(f); input.value = ""; }} /></label>
      <button class="primary" type="submit" disabled=${!vm.canSend.value}>${mode.kind === "edit" ? t("Save") : t("Send")}</button>
    </div>
    ${vm.error.value && html`<p class="error small" role="alert">${vm.error.value}</p>`}
  </form>`;
}
