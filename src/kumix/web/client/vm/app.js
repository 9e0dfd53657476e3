// The page's top level: who is logged in, which screen shows, and the view models of the
// current room, wired to the server's API. Views read this and call its methods.
import { signal, computed, batch } from "../vendor/signals-core.js";
import { Api, roomPath } from "../lib/api.js";
import { RoomListViewModel, CreateRoomViewModel } from "./rooms.js";
import { TimelineViewModel, normalize } from "./timeline.js";
import { ComposerViewModel } from "./composer.js";
import { LoginViewModel } from "./login.js";
import { ThemeViewModel } from "./theme.js";
import { ExtensionsViewModel } from "./extensions.js";
import { SearchViewModel } from "./search.js";

/** @typedef {"rooms" | "search" | "settings" | "extensions"} Screen */
/** @typedef {{user_id: string, device_id: string, homeserver: string}} Account */

export class AppViewModel {
  /** @param {Api} api */
  constructor(api) {
    this.api = api;
    /** @type {import("../vendor/signals-core.js").Signal<Account | null | undefined>} undefined until known */
    this.account = signal(/** @type {Account | null | undefined} */ (undefined));
    /** @type {import("../vendor/signals-core.js").Signal<Screen>} */
    this.screen = signal(/** @type {Screen} */ ("rooms"));
    this.online = signal(false);
    this.problem = signal(/** @type {string | null} */ (null));
    this.rooms = new RoomListViewModel();
    this.createRoom = new CreateRoomViewModel();
    this.creating = signal(false);
    this.theme = new ThemeViewModel();
    this.extensions = new ExtensionsViewModel();
    this.login = new LoginViewModel(async (body) => {
      const who = await this.api.send("/api/login", body);
      await this.signedIn(who);
    });
    this.search = new SearchViewModel(async (q, room) => {
      const doc = await this.api.get("/api/search", { q, room: room ?? undefined });
      return (doc.results ?? doc.events ?? []).map(normalize);
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
    });
    this.txn = 0;
  }

  /** @param {string} roomId @param {string} me */
  timelineFor(roomId, me) {
    let vm = this.timelines.get(roomId);
    if (!vm) {
      vm = new TimelineViewModel(roomId, me, async (before) => {
        const doc = await this.api.get(`${roomPath(roomId)}/events`, { limit: 50, before });
        return doc.events ?? [];
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
    this.account.value = who && who.logged_in ? who.account : null;
    if (!this.account.value) return;
    const [rooms, settings] = await Promise.all([this.api.get("/api/rooms"), this.api.get("/api/settings").catch(() => ({}))]);
    batch(() => {
      this.rooms.apply(rooms.rooms ?? []);
      if (settings.theme) this.theme.choose(settings.theme);
      if (settings.tokens) this.theme.tokens.value = settings.tokens;
    });
  }

  /** @param {import("../lib/events.js").Frame} frame */
  onFrame(frame) {
    if (frame.type === "rooms" && Array.isArray(frame.rooms)) this.rooms.apply(frame.rooms);
    else if ((frame.type === "event" || frame.type === "changed") && frame.event && typeof frame.event === "object") {
      const ev = normalize(frame);
      this.timelines.get(ev.room_id)?.add([ev]);
    } else if (frame.type === "extensions" && frame.figures && typeof frame.figures === "object") {
      this.extensions.applyFigures(/** @type {Record<string, unknown>} */ (frame.figures));
    } else if (frame.type === "typing" && typeof frame.room_id === "string" && Array.isArray(frame.users)) {
      this.timelines.get(frame.room_id)?.applyTyping(frame.users);
    } else if (frame.type === "receipts" && typeof frame.room_id === "string" && frame.receipts && typeof frame.receipts === "object") {
      this.timelines.get(frame.room_id)?.applyReceipts(/** @type {Record<string, string>} */ (frame.receipts));
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
    try {
      const doc = await this.roomSend("messages", { text, reply_to: replyTo ?? undefined, txn_id: txn });
      timeline.updateEcho(txn, { state: "sent", eventId: typeof doc?.event_id === "string" ? doc.event_id : null });
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

  /** @param {string} eventId @param {string} key @param {string | null} mine */
  async toggleReaction(eventId, key, mine) {
    if (mine) await this.roomSend("redact", { event_id: mine });
    else await this.roomSend("react", { event_id: eventId, key });
  }

  /** @param {string} roomId @param {boolean} accept */
  async answerInvite(roomId, accept) {
    if (accept) await this.api.send("/api/join", { room: roomId });
    else await this.api.send(`${roomPath(roomId)}/leave`, {});
  }

  async submitCreateRoom() {
    const body = this.createRoom.request();
    if (!body) return false;
    const doc = await this.api.send("/api/rooms", body);
    batch(() => {
      this.creating.value = false;
      if (typeof doc?.room_id === "string") this.rooms.select(doc.room_id);
    });
    return true;
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
