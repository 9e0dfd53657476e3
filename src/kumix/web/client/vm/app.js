// The page's top level: who is logged in, which screen shows, and the view models of the
// current room, wired to the server's API. Views read this and call its methods.
import { signal, computed, batch } from "../vendor/signals-core.js";
import { Api, roomPath } from "../lib/api.js";
import { RoomListViewModel, CreateRoomViewModel } from "./rooms.js";
import { TimelineViewModel, normalize } from "./timeline.js";
import { ComposerViewModel } from "./composer.js";
import { LoginViewModel } from "./login.js";
import { UnlockViewModel } from "./unlock.js";
import { ThemeViewModel } from "./theme.js";
import { ExtensionsViewModel } from "./extensions.js";
import { SearchViewModel } from "./search.js";
import { FramesViewModel } from "./frames.js";

/** @typedef {"rooms" | "search" | "settings" | "extensions"} Screen */
/** @typedef {{user_id: string, device_id: string, homeserver: string}} Account */
/** @typedef {{txn_id: string, room_id: string, state: string, event_id?: string | null, error?: string | null}} OutboxEntry */
/**
 * Sends a file's bytes to POST /api/rooms/{id}/upload, reporting progress.
 * @typedef {(roomId: string, file: Blob & {name: string}, progress: (sent: number) => void) => Promise<OutboxEntry>} Uploader
 */

/**
 * What a send's answer means for its local echo: the outbox keeps queued messages and says
 * when one failed for good.
 * @param {OutboxEntry | null | undefined} entry
 * @returns {{state: "sending" | "sent" | "failed", eventId: string | null, error: string | null}}
 */
export function echoState(entry) {
  const eventId = entry && typeof entry.event_id === "string" ? entry.event_id : null;
  if (!entry || entry.state === "failed") return { state: "failed", eventId, error: entry?.error ?? null };
  return { state: eventId || entry.state === "sent" ? "sent" : "sending", eventId, error: null };
}

/**
 * A receipts frame's list ({user_id, event_id, type, ts}) as user → event read up to; a
 * private receipt (only ever our own) shows nothing to others, so it is left out.
 * @param {unknown[]} receipts @returns {Record<string, string>}
 */
export function receiptMap(receipts) {
  /** @type {Record<string, string>} */
  const map = {};
  for (const r of receipts) {
    if (!r || typeof r !== "object") continue;
    const { user_id: user, event_id: eventId, type } = /** @type {Record<string, unknown>} */ (r);
    if (typeof user === "string" && typeof eventId === "string" && type !== "m.read.private") map[user] = eventId;
  }
  return map;
}

export class AppViewModel {
  /**
   * @param {Api} api
   * @param {(language: string) => Promise<void>} [applyLanguage]  loads a catalog (main.js)
   * @param {Uploader} [upload]
   * @param {string} [nonce]  this page's CSP nonce (its script tag's): UI frames are built with it
   */
  constructor(api, applyLanguage, upload, nonce = "") {
    this.api = api;
    this.applyLanguage = applyLanguage ?? (async () => undefined);
    this.upload = upload ?? (async () => { throw new Error("no uploader"); });
    /** @type {import("../vendor/signals-core.js").Signal<Account | null | undefined>} undefined until known */
    this.account = signal(/** @type {Account | null | undefined} */ (undefined));
    /** @type {import("../vendor/signals-core.js").Signal<Screen>} */
    this.screen = signal(/** @type {Screen} */ ("rooms"));
    this.online = signal(false);
    this.problem = signal(/** @type {string | null} */ (null));
    this.rooms = new RoomListViewModel();
    this.createRoom = new CreateRoomViewModel();
    this.creating = signal(false);
    /** The message whose deletion waits for the person's yes (the dialog shows while set). */
    this.deleting = signal(/** @type {string | null} */ (null));
    this.deleteFailure = signal(/** @type {string | null} */ (null));
    this.theme = new ThemeViewModel();
    this.extensions = new ExtensionsViewModel();
    this.login = new LoginViewModel(async (body) => {
      const who = await this.api.send("/api/login", body);
      await this.signedIn(who);
    });
    /** The account whose vault waits for its passphrase (the unlock screen shows while set). */
    this.locked = signal(/** @type {Account | null} */ (null));
    this.unlock = new UnlockViewModel(async (passphrase) => {
      const who = await this.api.send("/api/vault/unlock", { passphrase });
      await this.signedIn(who);
    });
    this.search = new SearchViewModel(async (q, room) => {
      const doc = await this.api.get("/api/search", { q, room: room ?? undefined });
      return Array.isArray(doc?.hits) ? doc.hits : [];
    });
    this.policy = signal(/** @type {unknown} */ (null));
    /** @type {Map<string, TimelineViewModel>} */
    this.timelines = new Map();
    this.timeline = computed(() => {
      const id = this.rooms.selected.value;
      const me = this.account.value?.user_id;
      return id && me ? this.timelineFor(id, me) : null;
    });
    this.composer = new ComposerViewModel({
      send: (text, replyTo) => this.sendMessage(text, replyTo),
      edit: async (eventId, text) => { await this.roomSend("edit", { event_id: eventId, text }); },
      lastOwn: () => {
        const tile = this.timeline.value?.lastOwnMessage.value;
        return tile ? { eventId: tile.event.event_id, body: tile.body } : null;
      },
      render: async (text) => {
        const doc = await this.api.send("/api/markdown/preview", { text });
        return typeof doc?.html === "string" ? doc.html : null;
      },
    });
    this.txn = 0;
    this.typingSentAt = 0;
    this.typingRoom = "";
    /** @type {Map<string, string>} */
    this.receiptSent = new Map();
    this.nonce = nonce;
    /** `/ext/{id}?room=ROOM`: one UI extension alone with that room, for its author. */
    this.solo = signal(/** @type {{extensionId: string, roomId: string} | null} */ (null));
    /** The event WebSocket's connection id (its hello frame); UI frames are mounted on it. */
    this.connection = signal(/** @type {string | null} */ (null));
    /** @type {(frame: Record<string, unknown>) => boolean} set by main.js to the event feed's send */
    this.sendFrame = () => false;
    this.frames = new FramesViewModel({
      mount: async (extensionId, roomId) => this.api.send("/api/ui/frames", {
        extension: extensionId, room: roomId, nonce: this.nonce, connection: this.connection.value ?? "",
        // The page's theme now: the saved setting may not have caught up with a choice just made.
        theme: this.theme.choice.value,
      }),
      enabled: async () => {
        const doc = await this.api.get("/api/extensions");
        this.extensions.apply(doc.extensions ?? []);
        return (doc.extensions ?? [])
          .filter((/** @type {any} */ e) => e.kind === "ui" && e.state === "enabled")
          .map((/** @type {any} */ e) => ({ id: String(e.id), name: String(e.name || e.id) }));
      },
      send: (frame) => this.sendFrame(frame),
      navigate: (uri) => this.navigate(uri),
    });
  }

  /**
   * A frame asked for a matrix.to room link (the server checked its shape): open that room
   * when this account knows it.
   * @param {string} uri
   */
  navigate(uri) {
    const target = decodeURIComponent(uri.replace(/^https:\/\/matrix\.to\/#\//, "").split(/[/?]/)[0]);
    const room = this.rooms.all.value.find((r) => r.room_id === target || r.alias === target);
    if (room) {
      this.rooms.select(room.room_id);
      this.show("rooms");
    }
  }

  /** @param {string} roomId @param {string} me */
  timelineFor(roomId, me) {
    let vm = this.timelines.get(roomId);
    if (!vm) {
      vm = new TimelineViewModel(roomId, me, async (before) => {
        const doc = await this.api.get(`${roomPath(roomId)}/events`, { limit: 50, before });
        return { events: doc.events ?? [], before: typeof doc.before === "number" ? doc.before : null };
      });
      this.timelines.set(roomId, vm);
      void vm.loadOlder();
    }
    return vm;
  }

  async start() {
    try {
      const who = await this.api.get("/api/whoami");
      await this.signedIn(who);
    } catch (err) {
      this.problem.value = err instanceof Error ? err.message : String(err);
      this.account.value = null;
    }
  }

  /** @param {any} who */
  async signedIn(who) {
    // A locked vault: nothing but the unlock answers yet, so no account (and no event feed).
    batch(() => {
      this.locked.value = who && who.logged_in && who.vault_locked ? who.account : null;
      this.account.value = who && who.logged_in && !who.vault_locked ? who.account : null;
    });
    if (!this.account.value) return;
    const [, settings, theme] = await Promise.all([
      // Applied as soon as it comes (not with the settings and theme), over the feed's frames.
      this.rooms.reload(async () => (await this.api.get("/api/rooms")).rooms ?? []),
      this.api.get("/api/settings").catch(() => ({})),
      // The theme-default extension's token maps, when the server offers them.
      this.api.get("/api/theme").catch(() => null),
    ]);
    if (theme && typeof theme === "object" && theme.light && theme.dark) this.theme.tokens.value = theme;
    batch(() => {
      if (settings.theme) this.theme.choose(settings.theme);
      if (settings.tokens) this.theme.tokens.value = settings.tokens;
    });
    if (typeof settings.language === "string") await this.applyLanguage(settings.language);
  }

  /** @param {import("../lib/events.js").Frame} frame */
  onFrame(frame) {
    if (frame.type === "hello" && typeof frame.connection === "string") {
      // A new connection: frames mounted on an earlier one are gone with it on the server,
      // and the feed replays missed timeline events only: room changes made while the page
      // was away are read again.
      if (this.connection.value && this.connection.value !== frame.connection) {
        this.frames.dropAll();
        void this.refreshRooms().catch(() => undefined);
      }
      this.connection.value = frame.connection;
    } else if (typeof frame.type === "string" && (frame.type.startsWith("bridge") || frame.type === "navigate")) {
      this.frames.onFrame(frame);
    } else if (frame.type === "rooms" && Array.isArray(frame.rooms)) this.rooms.merge(frame.rooms);
    else if (frame.type === "resync") {
      // The feed dropped updates while this page was behind: read the room list again and
      // each open timeline's newest page (known events are merged, not repeated).
      void this.refreshRooms().catch(() => undefined);
      for (const [roomId, vm] of this.timelines) {
        void this.api.get(`${roomPath(roomId)}/events`, { limit: 50 }).then((doc) => vm.add(doc.events ?? []), () => undefined);
      }
    }
    else if ((frame.type === "event" || frame.type === "changed") && frame.event && typeof frame.event === "object") {
      const ev = normalize(frame);
      this.timelines.get(ev.room_id)?.add([ev]);
    } else if (frame.type === "figures" && typeof frame.extension_id === "string" && frame.live && typeof frame.live === "object") {
      this.extensions.applyFigures({ [frame.extension_id]: frame.live });
    } else if (frame.type === "typing" && typeof frame.room_id === "string" && Array.isArray(frame.user_ids)) {
      this.timelines.get(frame.room_id)?.applyTyping(frame.user_ids.filter((u) => typeof u === "string"));
    } else if (frame.type === "receipts" && typeof frame.room_id === "string" && Array.isArray(frame.receipts)) {
      this.timelines.get(frame.room_id)?.applyReceipts(receiptMap(frame.receipts));
    }
  }

  /** @param {string} action @param {Record<string, unknown>} body */
  async roomSend(action, body) {
    const roomId = this.rooms.selected.value;
    if (!roomId) throw new Error("no room");
    return this.api.send(`${roomPath(roomId)}/${action}`, body);
  }

  /** @param {string} text @param {string | null} replyTo */
  async sendMessage(text, replyTo) {
    const timeline = this.timeline.value;
    if (!timeline) return;
    const txn = `web${Date.now()}-${++this.txn}`;
    timeline.echo(txn, text, replyTo, Date.now());
    this.typingNotice(false);
    try {
      const entry = /** @type {OutboxEntry} */ (await this.roomSend("messages", { text, reply_to: replyTo ?? undefined }));
      timeline.updateEcho(txn, echoState(entry));
    } catch (err) {
      timeline.updateEcho(txn, { state: "failed", error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** @param {string} txn */
  async retry(txn) {
    const timeline = this.timeline.value;
    const p = timeline?.pending.value.find((x) => x.txn === txn);
    if (!timeline || !p) return;
    timeline.dropEcho(txn);
    await this.sendMessage(p.body, p.replyTo);
  }

  /** Redact the message the delete dialog asked about; the dialog stays open with the reason when it fails. */
  async confirmDelete() {
    const eventId = this.deleting.value;
    if (!eventId) return false;
    this.deleteFailure.value = null;
    try {
      await this.roomSend("redact", { event_id: eventId });
      this.deleting.value = null;
      return true;
    } catch (err) {
      this.deleteFailure.value = err instanceof Error ? err.message : String(err);
      return false;
    }
  }

  /** @param {string} eventId @param {string} key @param {string | null} mine */
  async toggleReaction(eventId, key, mine) {
    if (mine) await this.roomSend("redact", { event_id: mine });
    else await this.roomSend("react", { event_id: eventId, key });
  }

  /**
   * Tell the room this person is typing, at most every few seconds while they are; off when
   * the composer empties or a message is sent.
   * @param {boolean} active
   */
  typingNotice(active) {
    const roomId = this.rooms.selected.value;
    if (!roomId) return;
    const now = Date.now();
    if (active && this.typingSentAt > now - 4000 && this.typingRoom === roomId) return;
    if (!active && !this.typingSentAt) return;
    this.typingSentAt = active ? now : 0;
    this.typingRoom = roomId;
    void this.api.send(`${roomPath(roomId)}/typing`, { typing: active }).catch(() => undefined);
  }

  /**
   * The newest message of the open room is on screen: send a read receipt for it (once per
   * event) and clear the room's counts at once.
   * @param {string} roomId @param {string} eventId
   */
  readUpTo(roomId, eventId) {
    if (this.receiptSent.get(roomId) === eventId || eventId.startsWith("txn:")) return;
    this.receiptSent.set(roomId, eventId);
    this.rooms.markRead(roomId);
    void this.api.send(`${roomPath(roomId)}/receipt`, { event_id: eventId }).catch(() => undefined);
  }

  /** @param {Blob & {name: string}} file */
  async attach(file) {
    const roomId = this.rooms.selected.value;
    if (!roomId) return;
    const id = this.composer.startUpload(file.name, file.size);
    try {
      const entry = await this.upload(roomId, file, (sent) => this.composer.updateUpload(id, { sent }));
      const { state, error } = echoState(entry);
      this.composer.updateUpload(id, { state: state === "failed" ? "failed" : "done", sent: file.size, error });
      if (state !== "failed") this.composer.dismissUpload(id);
    } catch (err) {
      this.composer.updateUpload(id, { state: "failed", error: err instanceof Error ? err.message : String(err) });
    }
  }

  /** @param {string} extensionId @param {"enable" | "disable" | "grant" | "revoke-send"} action @param {string} [capability] */
  async extensionAction(extensionId, action, capability) {
    await this.api.send(`/api/extensions/${encodeURIComponent(extensionId)}/${action}`, capability ? { capability } : {});
    const doc = await this.api.get("/api/extensions");
    this.extensions.apply(doc.extensions ?? []);
  }

  /** Open a search hit: its room, scrolled to the message. @param {{room_id: string, event_id: string}} hit */
  async openHit(hit) {
    batch(() => {
      this.rooms.select(hit.room_id);
      this.show("rooms");
    });
    await this.timeline.value?.jumpTo(hit.event_id);
  }

  /** The room list again, after a change made here (the feed's next "rooms" frame would too). */
  async refreshRooms() {
    await this.rooms.reload(async () => (await this.api.get("/api/rooms")).rooms ?? []);
  }

  /** @param {string} roomId @param {boolean} accept */
  async answerInvite(roomId, accept) {
    if (accept) await this.api.send("/api/join", { room: roomId });
    else await this.api.send(`${roomPath(roomId)}/leave`, {});
    await this.refreshRooms();
    if (accept) this.rooms.select(roomId);
  }

  async submitCreateRoom() {
    const body = this.createRoom.request();
    if (!body) return false;
    this.createRoom.failure.value = null;
    try {
      const doc = await this.api.send("/api/rooms", body);
      await this.refreshRooms();
      batch(() => {
        this.creating.value = false;
        if (typeof doc?.room_id === "string") this.rooms.select(doc.room_id);
      });
      return true;
    } catch (err) {
      this.createRoom.failure.value = err instanceof Error ? err.message : String(err);
      return false;
    }
  }

  /** @param {Screen} screen */
  show(screen) {
    this.screen.value = screen;
    if (screen === "extensions") void this.api.get("/api/extensions").then((d) => this.extensions.apply(d.extensions ?? []));
    if (screen === "settings") void this.api.get("/api/policy").then((d) => { this.policy.value = d; });
  }

  /** @param {"system" | "light" | "dark"} theme */
  async setTheme(theme) {
    this.theme.choose(theme);
    await this.api.send("/api/settings", { theme }, "PUT").catch(() => undefined);
  }

  async logout() {
    await this.api.send("/api/logout", {});
    batch(() => {
      this.account.value = null;
      this.rooms.apply([]);
      this.timelines.clear();
    });
  }
}
