import { html } from "../lib/html.js";
import { Icon } from "./icons.js";
import { t, formatBytes, formatNumber } from "../lib/i18n.js";
import { RichText } from "./timeline.js";

/** @param {{vm: import("../vm/composer.js").ComposerViewModel}} props */
function Preview({ vm }) {
  const p = vm.rendered.value;
  if (p.state === "off") return null;
  return html`<section class="preview" aria-label=${t("Preview")} aria-live="polite" aria-busy=${p.state === "loading"}>
    ${p.state === "loading" && html`<p class="muted small">${t("Rendering the preview…")}</p>`}
    ${p.state === "failed" && html`<p class="error small">${t("The preview could not be rendered.")} <span class="muted">${p.error}</span></p>`}
    ${p.state === "shown" && (!p.text.trim() ? html`<p class="muted small">${t("Nothing to preview.")}</p>`
      : p.html ? html`<${RichText} markup=${p.html} />` : html`<p class="text">${p.text}</p>`)}
  </section>`;
}

/** @param {{upload: import("../vm/composer.js").Upload, vm: import("../vm/composer.js").ComposerViewModel}} props */
function UploadRow({ upload: u, vm }) {
  const percent = u.size ? Math.floor((u.sent / u.size) * 100) : 100;
  return html`<div class=${`upload small ${u.state}`} role="status">
    <span class="upload-name">${u.name}</span>
    <progress max=${u.size || 1} value=${u.size ? u.sent : 1} aria-label=${t("Upload progress of {name}", { name: u.name })}></progress>
    <span class="muted">${u.state === "uploading" ? t("{percent}% · {sent} of {size}", { percent: formatNumber(percent), sent: formatBytes(u.sent), size: formatBytes(u.size) }) : formatBytes(u.size)}</span>
    ${u.state === "failed" && html`<span class="error">${t("Upload failed.")} ${u.error ?? ""}</span> <button type="button" class="link" onClick=${() => vm.dismissUpload(u.id)}>${t("Dismiss")}</button>`}
  </div>`;
}

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
    ${vm.uploads.value.map((u) => html`<${UploadRow} key=${u.id} upload=${u} vm=${vm} />`)}
    <${Preview} vm=${vm} />
    <div class="composer-row">
      <textarea rows="1" aria-label=${t("Message")} placeholder=${t("Write a message…")} value=${vm.text.value}
        onInput=${(/** @type {Event} */ e) => { vm.text.value = /** @type {HTMLTextAreaElement} */ (e.currentTarget).value; app.typingNotice(!!vm.text.value); vm.schedulePreview(); }}
        onKeyDown=${onKey} onPaste=${onPaste}></textarea>
      <label class="button icon attach" title=${t("Attach a file")}><${Icon} name="attach" /><input type="file" multiple class="visually-hidden" aria-label=${t("Attach a file")}
        onChange=${(/** @type {Event} */ e) => { const input = /** @type {HTMLInputElement} */ (e.currentTarget); for (const f of input.files ?? []) void app.attach(f); input.value = ""; }} /></label>
      <button type="button" class="icon preview-toggle" aria-pressed=${vm.preview.value} title=${t("Preview")} aria-label=${t("Preview")}
        onClick=${() => void vm.togglePreview()}><${Icon} name="eye" /></button>
      <button class="primary" type="submit" disabled=${!vm.canSend.value}>${mode.kind === "edit" ? t("Save") : t("Send")}</button>
    </div>
    ${vm.error.value && html`<p class="error small" role="alert">${vm.error.value}</p>`}
  </form>`;
}
