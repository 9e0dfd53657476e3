// The UI extensions shown next to the open room: which frames are mounted, the sends waiting
// for the person's confirmation, and the bridge frames between the event WebSocket and each
// frame's window. The page only relays: every bridge message goes to the server, which
// decides (kumix.web.bridge_link); the host gate of each frame is bridge/frame-bridge.js.
import { signal, computed } from "../vendor/signals-core.js";

/** @typedef {import("../bridge/mount.js").MountAnswer} MountAnswer */
/**
 * A mounted frame as the page tracks it; `handle` is set once the iframe is in the DOM.
 * @typedef {{ answer: MountAnswer, name: string,
 *             handle: { deliver: (message: unknown) => void, unload: () => void } | null }} Mounted
 */
/**
 * A send the server asks the person to confirm (a `bridge_ask` frame).
 * `poll`: for a vote, the poll's question and the chosen answers as the server reads them
 * from the room (not as the frame claims), or null when the poll is unknown.
 * @typedef {{ widgetId: string, extensionId: string, name: string, requestId: string,
 *             eventType: string, content: Record<string, unknown>,
 *             poll: { question: string, answers: string[] } | null }} Ask
 */
/**
 * What the view model needs from the page around it.
 * @typedef {object} FramesIo
 * @property {(extensionId: string, roomId: string) => Promise<MountAnswer>} mount  POST /api/ui/frames
 * @property {() => Promise<{id: string, name: string}[]>} enabled  the enabled UI extensions
 * @property {(frame: Record<string, unknown>) => boolean} send  a frame on the event WebSocket
 * @property {(uri: string) => void} navigate  a frame asked for a matrix.to room link
 */

/** @param {unknown} v @returns {v is Record<string, unknown>} */
const isRecord = (v) => typeof v === "object" && v !== null && !Array.isArray(v);

export class FramesViewModel {
  /** @param {FramesIo} io */
  constructor(io) {
    this.io = io;
    /** @type {import("../vendor/signals-core.js").Signal<Mounted[]>} */
    this.mounted = signal([]);
    /** @type {import("../vendor/signals-core.js").Signal<Ask[]>} */
    this.asks = signal([]);
    /** Why a frame went away on its own (flooding), shown once. */
    this.notice = signal(/** @type {string | null} */ (null));
    this.problem = signal(/** @type {string | null} */ (null));
    /** The room the frames are shown with. */
    this.roomId = signal(/** @type {string | null} */ (null));
    /** The extensions available to show in this room (enabled UI extensions). */
    this.available = signal(/** @type {{id: string, name: string}[]} */ ([]));
    /** Extensions the person closed in a room: not mounted again there until reopened. */
    /** @type {Map<string, Set<string>>} */
    this.closed = new Map();
    /** `/ext/{id}`: only this extension is shown (for authors). */
    this.only = /** @type {string | null} */ (null);
    this.ask = computed(() => this.asks.value[0] ?? null);
    this.hidden = computed(() => {
      const shown = new Set(this.mounted.value.map((m) => m.answer.extensionId));
      return this.available.value.filter((e) => !shown.has(e.id));
    });
    this.generation = 0;
    /** Mounts asked for and not answered yet ("room extension"): never asked twice. */
    /** @type {Set<string>} */
    this.inFlight = new Set();
    /** A frame was detached from the page: `paneShown` mounts again. */
    this.remountWhenShown = false;
  }

  /**
   * Show the frames of a room: those of another room go, each enabled UI extension not
   * closed here is mounted. A new event connection (after a reconnect) mounts them again.
   * @param {string | null} roomId
   */
  async show(roomId) {
    const generation = ++this.generation;
    this.roomId.value = roomId;
    for (const m of this.mounted.value) if (m.answer.roomId !== roomId) this.unload(m.answer.widgetId);
    if (!roomId) return;
    let list;
    try {
      list = await this.io.enabled();
    } catch (err) {
      this.problem.value = err instanceof Error ? err.message : String(err);
      return;
    }
    if (generation !== this.generation) return;
    if (this.only) list = list.filter((e) => e.id === this.only);
    this.available.value = list;
    const closed = this.closed.get(roomId) ?? new Set();
    // All at once: a large extension's first document takes seconds to build on the server,
    // and the others need not wait for it.
    await Promise.all(list
      .filter((ext) => (this.only || !closed.has(ext.id))
        && !this.mounted.value.some((m) => m.answer.extensionId === ext.id && m.answer.roomId === roomId))
      .map((ext) => this.mountOne(ext, roomId)));
  }

  /** @param {{id: string, name: string}} ext @param {string} roomId */
  async mountOne(ext, roomId) {
    const key = `${roomId} ${ext.id}`;
    if (this.inFlight.has(key)) return;
    this.inFlight.add(key);
    try {
      const answer = await this.io.mount(ext.id, roomId);
      if (this.roomId.value !== roomId) {
        this.io.send({ type: "bridge_unload", widget_id: answer.widgetId });
        return;
      }
      // Shown in the order the extensions are listed, whichever mount finished first.
      const rank = (/** @type {Mounted} */ m) => this.available.value.findIndex((e) => e.id === m.answer.extensionId);
      this.mounted.value = [...this.mounted.value, { answer, name: ext.name, handle: null }]
        .sort((x, y) => rank(x) - rank(y));
    } catch (err) {
      this.problem.value = `${ext.name}: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      this.inFlight.delete(key);
    }
  }

  /** Open an extension the person closed in this room. @param {string} extensionId */
  async reopen(extensionId) {
    const roomId = this.roomId.value;
    const ext = this.available.value.find((e) => e.id === extensionId);
    if (!roomId || !ext) return;
    this.closed.get(roomId)?.delete(extensionId);
    await this.mountOne(ext, roomId);
  }

  /**
   * The view took a frame's iframe out of the page while the frame is still shown here (the
   * room pane gave way to another screen, or the layout changed): that document is gone for
   * good, and a widgetId is never given to a second one. The server unloads it; the pane
   * mounts the extension anew, with a new token and the theme of that moment, when it shows
   * again (`paneShown`).
   * @param {string} widgetId
   */
  detached(widgetId) {
    const m = this.mounted.value.find((x) => x.answer.widgetId === widgetId);
    if (!m) return;  // closed, unloaded or another room's by now: nothing to bring back
    m.handle = null;  // the view removed the iframe already
    this.unload(widgetId);
    this.remountWhenShown = true;
  }

  /** The frames pane is in the page (again): mount what a detach took away. */
  paneShown() {
    if (!this.remountWhenShown) return;
    this.remountWhenShown = false;
    void this.show(this.roomId.value);
  }

  /** The person closes a frame: it stays closed in this room. @param {string} widgetId */
  close(widgetId) {
    const m = this.mounted.value.find((x) => x.answer.widgetId === widgetId);
    if (m) {
      const set = this.closed.get(m.answer.roomId) ?? new Set();
      set.add(m.answer.extensionId);
      this.closed.set(m.answer.roomId, set);
    }
    this.unload(widgetId);
  }

  /** @param {string} widgetId */
  unload(widgetId) {
    const m = this.mounted.value.find((x) => x.answer.widgetId === widgetId);
    if (!m) return;
    m.handle?.unload();
    this.mounted.value = this.mounted.value.filter((x) => x !== m);
    this.asks.value = this.asks.value.filter((a) => a.widgetId !== widgetId);
    this.io.send({ type: "bridge_unload", widget_id: widgetId });
  }

  /** The event connection was replaced: its frames are gone on the server (they are
   * mounted again for the new one). */
  dropAll() {
    for (const m of this.mounted.value) m.handle?.unload();
    this.mounted.value = [];
    this.asks.value = [];
  }

  /**
   * The view put the iframe in the DOM (bridge/mount.js): messages for it can be delivered.
   * @param {string} widgetId @param {Mounted["handle"]} handle
   */
  attached(widgetId, handle) {
    const m = this.mounted.value.find((x) => x.answer.widgetId === widgetId);
    if (m) m.handle = handle;
  }

  /** An accepted message of a frame, for the server. @param {string} widgetId @param {string} raw */
  forward(widgetId, raw) {
    this.io.send({ type: "bridge", widget_id: widgetId, message: raw });
  }

  /** The frame loaded: the server starts the capability negotiation. @param {string} widgetId */
  loaded(widgetId) {
    this.io.send({ type: "bridge_start", widget_id: widgetId });
  }

  /** The host gate unloaded a flooding frame. @param {string} widgetId @param {string} reason */
  flooded(widgetId, reason) {
    const m = this.mounted.value.find((x) => x.answer.widgetId === widgetId);
    this.notice.value = `${m?.name ?? widgetId}: ${reason}`;
    if (m) m.handle = null;  // the iframe is already gone
    this.unload(widgetId);
  }

  /**
   * A frame of the event WebSocket whose type is bridge*, or navigate.
   * @param {Record<string, unknown>} frame
   */
  onFrame(frame) {
    if (frame.type === "navigate" && typeof frame.uri === "string") {
      this.io.navigate(frame.uri);
      return;
    }
    const widgetId = frame.widget_id;
    if (typeof widgetId !== "string") return;
    const m = this.mounted.value.find((x) => x.answer.widgetId === widgetId);
    if (!m) return;
    if (frame.type === "bridge") m.handle?.deliver(frame.message);
    else if (frame.type === "bridge_unload") {
      this.notice.value = `${m.name}: ${String(frame.reason ?? "")}`;
      m.handle?.unload();
      m.handle = null;
      this.mounted.value = this.mounted.value.filter((x) => x !== m);
      this.asks.value = this.asks.value.filter((a) => a.widgetId !== widgetId);
    } else if (frame.type === "bridge_ask" && typeof frame.request_id === "string"
               && typeof frame.event_type === "string" && isRecord(frame.content)) {
      this.asks.value = [...this.asks.value, {
        widgetId, extensionId: m.answer.extensionId, name: m.name, requestId: frame.request_id,
        eventType: frame.event_type, content: frame.content, poll: pollOf(frame.poll),
      }];
    }
  }

  /**
   * The person's answer to the first waiting send.
   * @param {boolean} approved @param {boolean} always  "allow for this extension"
   */
  answer(approved, always) {
    const ask = this.ask.value;
    if (!ask) return;
    this.asks.value = this.asks.value.slice(1);
    this.io.send({ type: "bridge_answer", widget_id: ask.widgetId, request_id: ask.requestId, approved,
                   always: approved && always });
  }
}

/** @param {unknown} raw @returns {{ question: string, answers: string[] } | null} */
function pollOf(raw) {
  if (!isRecord(raw) || typeof raw.question !== "string" || !Array.isArray(raw.answers)) return null;
  return { question: raw.question, answers: raw.answers.filter((a) => typeof a === "string") };
}

/**
 * What the confirmation dialog shows of a send: the text of a message, or the chosen
 * answers of a vote (ids, as the frame sent them); never HTML.
 * @param {Ask} ask
 * @returns {{ kind: "message" | "vote" | "other", text: string }}
 */
export function describeSend(ask) {
  const c = ask.content;
  if (ask.eventType === "m.room.message") return { kind: "message", text: typeof c.body === "string" ? c.body : "" };
  const vote = c["m.poll.response"] ?? c["org.matrix.msc3381.poll.response"];
  if (isRecord(vote) && Array.isArray(vote.answers)) {
    return { kind: "vote", text: vote.answers.filter((a) => typeof a === "string").join(", ") };
  }
  return { kind: "other", text: ask.eventType };
}
