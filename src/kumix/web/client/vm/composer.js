// The composer: text, reply and edit modes, attachments with progress, and what each key
// does. Sending goes through the injected `send` functions, so the rules are tested alone.
import { signal, computed, batch } from "../vendor/signals-core.js";

/** @typedef {{kind: "new"} | {kind: "reply", eventId: string} | {kind: "edit", eventId: string}} Mode */
/** @typedef {{id: number, name: string, size: number, sent: number, state: "uploading" | "done" | "failed", error: string | null}} Upload */
/** @typedef {"send" | "newline" | "edit-last" | "cancel" | null} KeyAction */

/**
 * @typedef {object} Sender
 * @property {(text: string, replyTo: string | null) => Promise<void>} send
 * @property {(eventId: string, text: string) => Promise<void>} edit
 * @property {() => ({eventId: string, body: string} | null)} lastOwn  the message Up edits
 * @property {(text: string) => Promise<string | null>} [render]  the markdown preview: the
 *   sanitized HTML the server's markdown extension makes of the text (null: plain text)
 */

/**
 * The preview of the composer's text: what the markdown extension made of `text` (`html`
 * null when it goes as plain text), or where that stands.
 * @typedef {{state: "off"} | {state: "loading", text: string} | {state: "shown", text: string, html: string | null} | {state: "failed", text: string, error: string}} Preview
 */

/** A pause in typing this long renders the preview again: one extension call per pause, not per key. */
const PREVIEW_PAUSE_MS = 300;

export class ComposerViewModel {
  /** @param {Sender} sender */
  constructor(sender) {
    this.sender = sender;
    this.text = signal("");
    /** @type {import("../vendor/signals-core.js").Signal<Mode>} */
    this.mode = signal({ kind: "new" });
    this.preview = signal(false);
    /** @type {import("../vendor/signals-core.js").Signal<Preview>} */
    this.rendered = signal(/** @type {Preview} */ ({ state: "off" }));
    /** @type {import("../vendor/signals-core.js").Signal<Upload[]>} */
    this.uploads = signal([]);
    this.error = signal(/** @type {string | null} */ (null));
    this.canSend = computed(() => this.text.value.trim().length > 0);
    this.nextUpload = 1;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.previewTimer = undefined;
  }

  /**
   * What a key press in the text area means. Enter sends and Shift+Enter adds a line; Up in an
   * empty composer edits the last own message; Esc leaves reply or edit mode. An IME
   * composition's Enter (Japanese input) confirms the composition, never sends.
   * @param {{key: string, shiftKey: boolean, isComposing: boolean, altKey?: boolean, ctrlKey?: boolean, metaKey?: boolean}} e
   * @returns {KeyAction}
   */
  keyAction(e) {
    if (e.isComposing) return null;
    if (e.key === "Enter") return e.shiftKey ? "newline" : e.altKey || e.ctrlKey || e.metaKey ? null : "send";
    if (e.key === "ArrowUp" && !this.text.value && this.mode.value.kind === "new") return "edit-last";
    if (e.key === "Escape" && (this.mode.value.kind !== "new" || this.preview.value)) return "cancel";
    return null;
  }

  /** @param {string} eventId */
  replyTo(eventId) {
    this.mode.value = { kind: "reply", eventId };
  }

  /** Enter edit mode on the last own message; false when there is none. */
  editLast() {
    const last = this.sender.lastOwn();
    if (!last) return false;
    this.startEdit(last.eventId, last.body);
    return true;
  }

  /** @param {string} eventId @param {string} body */
  startEdit(eventId, body) {
    batch(() => {
      this.mode.value = { kind: "edit", eventId };
      this.text.value = body;
    });
  }

  cancel() {
    batch(() => {
      if (this.mode.value.kind === "edit") this.text.value = "";
      this.mode.value = { kind: "new" };
      this.preview.value = false;
      this.rendered.value = { state: "off" };
    });
  }

  /** Send or save the edit. The text is cleared at once: the timeline shows the local echo. */
  async submit() {
    const text = this.text.value;
    if (!text.trim()) return false;
    const mode = this.mode.value;
    batch(() => {
      this.text.value = "";
      this.mode.value = { kind: "new" };
      this.preview.value = false;
      this.rendered.value = { state: "off" };
      this.error.value = null;
    });
    try {
      if (mode.kind === "edit") await this.sender.edit(mode.eventId, text);
      else await this.sender.send(text, mode.kind === "reply" ? mode.eventId : null);
      return true;
    } catch (err) {
      // An edit that failed goes back into the composer; a message stays in the timeline as failed.
      if (mode.kind === "edit") batch(() => { this.text.value = text; this.mode.value = mode; });
      this.error.value = err instanceof Error ? err.message : String(err);
      return false;
    }
  }

  /**
   * Show or hide the preview. Shown, it is rendered again by `refreshPreview` (the view
   * calls it after a pause in typing); an answer for text that has changed since is dropped.
   * @param {boolean} [on]
   */
  async togglePreview(on = !this.preview.value) {
    this.preview.value = on;
    if (!on) {
      this.rendered.value = { state: "off" };
      return;
    }
    await this.refreshPreview();
  }

  /** After a keystroke: render the preview again once typing pauses (when it is shown). */
  schedulePreview() {
    if (!this.preview.value) return;
    clearTimeout(this.previewTimer);
    this.previewTimer = setTimeout(() => void this.refreshPreview(), PREVIEW_PAUSE_MS);
  }

  async refreshPreview() {
    const text = this.text.value;
    if (!this.preview.value) return;
    const now = this.rendered.value;
    if (now.state !== "off" && now.state !== "failed" && now.text === text) return;
    if (!text.trim() || !this.sender.render) {
      this.rendered.value = { state: "shown", text, html: null };
      return;
    }
    this.rendered.value = { state: "loading", text };
    /** @type {Preview} */
    let next;
    try {
      next = { state: "shown", text, html: await this.sender.render(text) };
    } catch (err) {
      next = { state: "failed", text, error: err instanceof Error ? err.message : String(err) };
    }
    // Only the answer for the text still in the composer, and only while the preview is on.
    const current = this.rendered.value;
    if (this.preview.value && current.state === "loading" && current.text === text) this.rendered.value = next;
  }

  /** @param {string} name @param {number} size @returns {number} the upload's id */
  startUpload(name, size) {
    const id = this.nextUpload++;
    this.uploads.value = [...this.uploads.value, { id, name, size, sent: 0, state: "uploading", error: null }];
    return id;
  }

  /** @param {number} id @param {Partial<Upload>} change */
  updateUpload(id, change) {
    this.uploads.value = this.uploads.value.map((u) => (u.id === id ? { ...u, ...change, sent: Math.min(change.sent ?? u.sent, u.size) } : u));
  }

  /** @param {number} id */
  dismissUpload(id) {
    this.uploads.value = this.uploads.value.filter((u) => u.id !== id);
  }
}
