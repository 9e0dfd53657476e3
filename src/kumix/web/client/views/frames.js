// The UI extensions of the open room: each in its sandboxed srcdoc iframe (bridge/mount.js),
// a list of the active ones with a button to unload each, and the dialog that asks before a
// frame sends anything in the person's name.
import { html } from "../lib/html.js";
import { t } from "../lib/i18n.js";
import { useEffect, useRef, useState } from "../vendor/preact-hooks.js";
import { mountFrame } from "../bridge/mount.js";
import { Dialog } from "./dialog.js";
import { describeSend } from "../vm/frames.js";

/** @typedef {import("../vm/frames.js").FramesViewModel} FramesViewModel */
/** @typedef {import("../vm/frames.js").Mounted} Mounted */

/** One frame: mounted once into its own box, unmounted when the box goes. @param {{vm: FramesViewModel, m: Mounted}} props */
function Frame({ vm, m }) {
  const box = useRef(/** @type {HTMLDivElement | null} */ (null));
  useEffect(() => {
    const container = box.current;
    if (!container) return undefined;
    const id = m.answer.widgetId;
    const handle = mountFrame(container, m.answer, {
      forward: (raw) => vm.forward(id, raw),
      onLoad: () => vm.loaded(id),
      onUnload: (reason) => vm.flooded(id, reason),
    });
    vm.attached(id, handle);
    return () => { handle.unload(); vm.detached(id); };
  }, [m.answer.widgetId]);
  return html`<section class="ui-frame" aria-label=${m.name}>
    <header class="ui-frame-head"><strong>${m.name}</strong>
      <button class="small" onClick=${() => vm.close(m.answer.widgetId)}>${t("Unload")}</button></header>
    <div class="ui-frame-box" ref=${box}></div>
  </section>`;
}

/** @param {{vm: FramesViewModel}} props */
export function FramesPanel({ vm }) {
  // Back in the page after another screen: the frames detached meanwhile are mounted anew.
  useEffect(() => { vm.paneShown(); }, []);
  const mounted = vm.mounted.value;
  const hidden = vm.hidden.value;
  return html`<aside class="ui-frames" aria-label=${t("Extensions in this room")}>
    <h2 class="small">${t("Extensions in this room")}</h2>
    ${vm.notice.value && html`<p class="error small" role="alert">${t("An extension was unloaded: {reason}", { reason: vm.notice.value })}
      <button class="small" onClick=${() => { vm.notice.value = null; }}>${t("Dismiss")}</button></p>`}
    ${vm.problem.value && html`<p class="error small" role="alert">${vm.problem.value}</p>`}
    ${!mounted.length && !hidden.length && html`<p class="muted small">${t("No UI extension is enabled.")}</p>`}
    <ul class="ui-active small" aria-label=${t("Active extensions")}>
      ${mounted.map((m) => html`<li key=${m.answer.widgetId}>${m.name}
        <button class="small" onClick=${() => vm.close(m.answer.widgetId)} aria-label=${t("Unload {name}", { name: m.name })}>${t("Unload")}</button></li>`)}
      ${hidden.map((e) => html`<li key=${e.id} class="muted">${e.name}
        <button class="small" onClick=${() => void vm.reopen(e.id)} aria-label=${t("Show {name}", { name: e.name })}>${t("Show")}</button></li>`)}
    </ul>
    ${mounted.map((m) => html`<${Frame} key=${m.answer.widgetId} vm=${vm} m=${m} />`)}
  </aside>`;
}

/** The confirmation of one send, every time unless "allow for this extension" is ticked. @param {{vm: FramesViewModel, roomName: string}} props */
export function ConfirmSend({ vm, roomName }) {
  const ask = vm.ask.value;
  const [always, setAlways] = useState(false);
  if (!ask) return null;
  const what = describeSend(ask);
  const poll = ask.poll;
  return html`<${Dialog} label=${t("Send from an extension?")} onClose=${() => vm.answer(false, false)}>
    <h2>${t("Send from an extension?")}</h2>
    <p>${what.kind === "vote"
      ? t("{name} wants to vote in {room} as you:", { name: ask.name, room: roomName })
      : t("{name} wants to send this in {room} as you:", { name: ask.name, room: roomName })}</p>
    ${what.kind === "vote" && poll
      ? html`<blockquote class="confirm-preview"><strong>${poll.question}</strong><br />${poll.answers.join(", ")}</blockquote>`
      : html`<blockquote class="confirm-preview">${what.text}</blockquote>`}
    <label><input type="checkbox" checked=${always} onChange=${() => setAlways(!always)} /> ${t("Allow for this extension (do not ask again)")}</label>
    <div class="buttons">
      <button type="button" onClick=${() => { setAlways(false); vm.answer(false, false); }}>${t("Don't send")}</button>
      <button class="primary" type="button" onClick=${() => { vm.answer(true, always); setAlways(false); }}>${t("Send")}</button>
    </div>
  <//>`;
}
