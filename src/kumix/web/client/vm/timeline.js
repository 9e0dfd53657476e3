// One room's timeline as tiles: messages with their latest edit, reactions, redactions and
// replies folded in, date separators, sender runs, undecryptable placeholders that turn into
// messages when their keys arrive, and local echoes of what is being sent. Pure state: the
// view virtualizes the tiles (@tanstack/virtual-core) by their stable keys.
import { signal, computed, batch } from "../vendor/signals-core.js";

/**
 * An event as the server sends it (core.models.Event.to_json, with the store's cursor).
 * @typedef {object} EventDoc
 * @property {string} event_id
 * @property {string} room_id
 * @property {string} sender
 * @property {number} ts
 * @property {"text"|"file"|"reaction"|"redaction"|"edit"|"undecryptable"|"member"|"state"|"other"} kind
 * @property {string} body
 * @property {boolean} encrypted
 * @property {string} [html]
 * @property {string} [msgtype]
 * @property {string} [relates_to]
 * @property {string} [reply_to]
 * @property {string} [key]
 * @property {{url: string, name: string, mimetype: string | null, size: number | null}} [file]
 * @property {number} [cursor]
 * @property {string} [sender_trust]  of an encrypted event: the shield (vm/shield.js)
 * @property {string} [sender_device]
 */

/** @typedef {{key: string, count: number, mine: string | null, senders: string[]}} Reaction */

/**
 * @typedef {object} MessageTile
 * @property {"message"} type
 * @property {string} key
 * @property {EventDoc} event  the original event
 * @property {string} body  the latest text (an edit's)
 * @property {string | undefined} html
 * @property {boolean} edited
 * @property {boolean} redacted
 * @property {boolean} undecryptable
 * @property {boolean} continuation  same sender as the tile before, within RUN_MS
 * @property {Reaction[]} reactions
 * @property {string[]} readBy  users whose read receipt is on this event
 * @property {"sending" | "sent" | "failed" | null} sending  local echoes only
 */
/** @typedef {{type: "day", key: string, ts: number}} DayTile */
/**
 * A room change worth a line: membership, and the state a person sees (name, topic,
 * encryption). Other state events (power levels, join rules, ...) show nothing.
 * @typedef {{type: "notice", key: string, event: EventDoc, change: NoticeChange, subject: string}} NoticeTile
 */
/** @typedef {"join" | "leave" | "invite" | "ban" | "name" | "topic" | "encryption" | "create"} NoticeChange */
/** @typedef {MessageTile | DayTile | NoticeTile} Tile */

/** @typedef {{txn: string, body: string, replyTo: string | null, ts: number, state: "sending" | "sent" | "failed", eventId: string | null, error: string | null}} Pending */

export const RUN_MS = 5 * 60 * 1000;

/** @type {Record<string, NoticeChange>} */
const STATE_NOTICES = { "m.room.name": "name", "m.room.topic": "topic", "m.room.encryption": "encryption", "m.room.create": "create" };
const MEMBERSHIPS = new Set(["join", "leave", "invite", "ban"]);

/**
 * The notice line of a member or state event, or null when it shows nothing. The server
 * writes a member event's body as "<user id> <membership>", a state event's as its type.
 * @param {EventDoc} ev @returns {{change: NoticeChange, subject: string} | null}
 */
export function notice(ev) {
  if (ev.kind === "member") {
    const [subject, membership] = ev.body.split(" ");
    return subject && MEMBERSHIPS.has(membership) ? { change: /** @type {NoticeChange} */ (membership), subject } : null;
  }
  const change = STATE_NOTICES[ev.body];
  return change ? { change, subject: ev.sender } : null;
}

/** Local calendar day of a timestamp, the separator's key. @param {number} ts */
export function dayOf(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/**
 * The server pages items either as events carrying their cursor or as {cursor, event}.
 * @param {any} item @returns {EventDoc}
 */
export function normalize(item) {
  if (item && typeof item === "object" && item.event && typeof item.event === "object") {
    return { ...item.event, cursor: item.cursor ?? item.event.cursor };
  }
  return item;
}

/**
 * Timeline order: by origin timestamp, then cursor, then id. The cursor is the store's change
 * cursor, which moves when an event changes (a key arrives, a retry decrypts it), so it cannot
 * be the order on its own.
 * @param {EventDoc} a @param {EventDoc} b
 */
function order(a, b) {
  if (a.ts !== b.ts) return a.ts - b.ts;
  if (a.cursor !== undefined && b.cursor !== undefined && a.cursor !== b.cursor) return a.cursor - b.cursor;
  return a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0;
}

export class TimelineViewModel {
  /**
   * @param {string} roomId
   * @param {string} ownUserId
   * @param {(before: number | undefined) => Promise<any[] | {events: any[], before?: number | null}>} loadBefore
   *   older items before a position; a page that names its own `before` position is paged on from there
   */
  constructor(roomId, ownUserId, loadBefore) {
    this.roomId = roomId;
    this.ownUserId = ownUserId;
    this.loadBefore = loadBefore;
    /** @type {import("../vendor/signals-core.js").Signal<Map<string, EventDoc>>} */
    this.events = signal(new Map());
    /** @type {import("../vendor/signals-core.js").Signal<Pending[]>} */
    this.pending = signal([]);
    /** @type {import("../vendor/signals-core.js").Signal<Record<string, string>>} user → event id read up to */
    this.receipts = signal({});
    /** @type {import("../vendor/signals-core.js").Signal<string[]>} */
    this.typing = signal([]);
    this.hasMore = signal(true);
    /** Where the next older page starts, as the server's last page said; undefined: the newest. */
    this.position = /** @type {number | undefined} */ (undefined);
    this.loading = signal(false);
    this.error = signal(/** @type {string | null} */ (null));
    /** The message a search hit or a reply link asked to see; the view scrolls to it. */
    this.focused = signal(/** @type {string | null} */ (null));

    /**
     * The tiles of the last build by key: a rebuild hands out the same object for a tile whose
     * content did not change, so the view re-renders only the rows that did (a page of 50
     * older messages in a room of 10 000 changes no row on screen).
     * @type {Map<string, Tile>}
     */
    this.built = new Map();
    /** @type {LastBuild | null} */
    this.last = null;
    /** @type {{from: Map<string, EventDoc>, to: Map<string, EventDoc>, added: EventDoc[]} | null} the last `add` */
    this.change = null;
    /** @type {import("../vendor/signals-core.js").ReadonlySignal<Tile[]>} */
    this.tiles = computed(() => this.build(this.events.value, this.pending.value, this.receipts.value));
    this.typingOthers = computed(() => this.typing.value.filter((u) => u !== this.ownUserId));
    /** The message Up edits: the newest own message, unless the server has not taken it yet. */
    this.lastOwnMessage = computed(() => {
      const tiles = this.tiles.value;
      for (let i = tiles.length - 1; i >= 0; i--) {
        const tile = tiles[i];
        if (tile.type !== "message" || tile.event.sender !== this.ownUserId) continue;
        // An echo the server acknowledged has its event id and can be edited already.
        if (tile.sending !== null && !(tile.sending === "sent" && !tile.event.event_id.startsWith("txn:"))) return null;
        return !tile.redacted && !tile.undecryptable && tile.event.kind === "text" ? tile : null;
      }
      return null;
    });
    /**
     * The newest event of the room, whatever its kind: what a read receipt names. A reaction
     * or an edit after the last message counts too (in an encrypted room the homeserver
     * cannot tell them from messages and counts them as unread until a receipt covers them).
     */
    this.newestEventId = computed(() => {
      /** @type {EventDoc | null} */
      let newest = null;
      for (const ev of this.events.value.values()) if (!newest || order(newest, ev) < 0) newest = ev;
      return newest ? newest.event_id : null;
    });
    /** event id → its message tile (a reply's quote shows the latest text of its target). */
    this.byEventId = computed(() => {
      /** @type {Map<string, MessageTile>} */
      const map = new Map();
      for (const tile of this.tiles.value) if (tile.type === "message") map.set(tile.event.event_id, tile);
      return map;
    });
  }

  /** @param {any[]} items  events or {cursor, event} from the server, in any order */
  add(items) {
    if (!items.length) return;
    const from = this.events.value;
    const next = new Map(from);
    /** @type {EventDoc[]} */
    const added = [];
    let replaced = false;
    for (const raw of items) {
      const ev = normalize(raw);
      if (!ev || typeof ev.event_id !== "string" || ev.room_id !== this.roomId) continue;
      const had = next.get(ev.event_id);
      // A "changed" frame (a key arrived, a retry decrypted it) replaces the event in place.
      const kept = had && had.cursor !== undefined && ev.cursor === undefined ? { ...ev, cursor: had.cursor } : ev;
      next.set(ev.event_id, kept);
      if (had) replaced = true;
      else added.push(kept);
    }
    // What `build` may take as a page added to the last build (nothing replaced).
    this.change = replaced ? null : { from, to: next, added };
    // Own messages that arrived: their echoes go. By event id when the send's answer named
    // it; otherwise (the outbox had only queued it) the oldest echo with the same text.
    const arrivedBodies = items.map(normalize)
      .filter((ev) => ev && ev.sender === this.ownUserId && ev.kind === "text" && ev.room_id === this.roomId &&
        !this.pending.value.some((p) => p.eventId === ev.event_id))
      .map((ev) => ev.body);
    batch(() => {
      this.events.value = next;
      let left = this.pending.value.filter((p) => !(p.eventId && next.has(p.eventId)));
      for (const body of arrivedBodies) {
        const i = left.findIndex((p) => !p.eventId && p.state !== "failed" && p.body === body);
        if (i >= 0) left = [...left.slice(0, i), ...left.slice(i + 1)];
      }
      if (left.length !== this.pending.value.length) this.pending.value = left;
    });
  }

  /** Load the page before the oldest loaded event; false when the start was reached. */
  async loadOlder() {
    if (this.loading.value || !this.hasMore.value) return false;
    this.loading.value = true;
    this.error.value = null;
    try {
      let before = this.position;
      if (before === undefined && this.events.value.size) {
        for (const ev of this.events.value.values()) {
          if (ev.cursor !== undefined && (before === undefined || ev.cursor < before)) before = ev.cursor;
        }
      }
      const answer = await this.loadBefore(before);
      const items = Array.isArray(answer) ? answer : answer.events ?? [];
      if (!Array.isArray(answer) && typeof answer.before === "number") this.position = answer.before;
      const fresh = items.map(normalize).filter((ev) => ev && !this.events.value.has(ev.event_id));
      batch(() => {
        this.add(fresh);
        if (!fresh.length) this.hasMore.value = false;
      });
      return fresh.length > 0;
    } catch (err) {
      this.error.value = err instanceof Error ? err.message : String(err);
      return false;
    } finally {
      this.loading.value = false;
    }
  }

  /**
   * Page back until the event is loaded (at most `pages` pages), then focus it.
   * @param {string} eventId @param {number} [pages]
   */
  async jumpTo(eventId, pages = 40) {
    for (let i = 0; i < pages && !this.events.value.has(eventId); i++) {
      if (this.loading.value) await new Promise((resolve) => setTimeout(resolve, 50));
      else if (!(await this.loadOlder()) && !this.hasMore.value) break;
    }
    const found = this.events.value.has(eventId);
    this.focused.value = found ? eventId : null;
    return found;
  }

  /** @param {string} txn @param {string} body @param {string | null} replyTo @param {number} ts */
  echo(txn, body, replyTo, ts) {
    this.pending.value = [...this.pending.value, { txn, body, replyTo, ts, state: "sending", eventId: null, error: null }];
  }

  /** @param {string} txn @param {Partial<Pending>} change */
  updateEcho(txn, change) {
    this.pending.value = this.pending.value
      .map((p) => (p.txn === txn ? { ...p, ...change } : p))
      .filter((p) => !(p.eventId && this.events.value.has(p.eventId)));
  }

  /** @param {string} txn */
  dropEcho(txn) {
    this.pending.value = this.pending.value.filter((p) => p.txn !== txn);
  }

  /** @param {Record<string, string>} receipts  user → event id */
  applyReceipts(receipts) {
    this.receipts.value = { ...this.receipts.value, ...receipts };
  }

  /** @param {string[]} users */
  applyTyping(users) {
    this.typing.value = [...users];
  }

  /** @param {string} eventId @returns {EventDoc | undefined} */
  event(eventId) {
    return this.events.value.get(eventId);
  }

  /** @param {string} eventId */
  indexOf(eventId) {
    return this.tiles.value.findIndex((t) => t.type === "message" && t.event.event_id === eventId);
  }

  /**
   * The tiles, built in full, or — when the only change since the last build is a page of
   * events older than every loaded one (paging back) — by building that page's tiles and
   * joining them to the previous ones: paging through 10 000 messages then costs each page
   * its own 50 events instead of all those loaded.
   * @param {Map<string, EventDoc>} events @param {Pending[]} pending @param {Record<string, string>} receipts
   * @returns {Tile[]}
   */
  build(events, pending, receipts) {
    const last = this.last;
    const change = this.change;
    if (last && change && change.to === events && change.from === last.events && pending === last.pending && receipts === last.receipts) {
      const tiles = this.prepend(last, change.added, events);
      if (tiles) return tiles;
    }
    const all = [...events.values()].sort(order);
    /** @type {Relations} */
    const rel = { redacted: new Set(), latestEdit: new Map(), reactions: new Map() };
    relate(rel, all, events);
    /** @type {Map<string, string[]>} */
    const readBy = new Map();
    for (const [user, eventId] of Object.entries(receipts)) {
      if (user === this.ownUserId) continue;
      readBy.set(eventId, [...(readBy.get(eventId) ?? []), user]);
    }
    const run = this.tilesOf(all, rel, readBy);
    for (const p of pending) {
      if (p.eventId && events.has(p.eventId)) continue;
      run.separate(p.ts);
      run.push({
        type: "message",
        key: `txn:${p.txn}`,
        event: { event_id: p.eventId ?? `txn:${p.txn}`, room_id: this.roomId, sender: this.ownUserId, ts: p.ts, kind: "text", body: p.body, encrypted: false, reply_to: p.replyTo ?? undefined },
        body: p.body,
        html: undefined,
        edited: false,
        redacted: false,
        undecryptable: false,
        continuation: false,
        reactions: [],
        readBy: [],
        sending: p.state,
      });
    }
    const tiles = run.tiles;
    this.built = new Map(tiles.map((tile) => [tile.key, tile]));
    this.last = { events, pending, receipts, oldest: all[0], rel, readBy, tiles };
    return tiles;
  }

  /**
   * The paging-back fast path of `build`, or null when the change is anything else: an added
   * event newer than the oldest loaded one, a relation of the new page aimed at a loaded event
   * (it would change a tile already built), or a loaded edit whose target arrives with another
   * sender (the edit was accepted while its target was unknown).
   * @param {LastBuild} last @param {EventDoc[]} added @param {Map<string, EventDoc>} events
   * @returns {Tile[] | null}
   */
  prepend(last, added, events) {
    if (!added.length || !last.oldest) return null;
    const page = [...added].sort(order);
    if (order(page[page.length - 1], last.oldest) >= 0) return null;
    for (const ev of page) {
      if (ev.relates_to && last.events.has(ev.relates_to)) return null;
      const edit = last.rel.latestEdit.get(ev.event_id);
      if (edit && edit.sender !== ev.sender) return null;
    }
    relate(last.rel, page, events);
    const run = this.tilesOf(page, last.rel, last.readBy);
    const fresh = run.tiles;
    let old = last.tiles;
    // The previous tiles start with their day's separator; the page may end in that day.
    const first = old[0];
    if (first && first.type === "day" && fresh.some((t) => t.type === "day" && t.key === first.key)) {
      old = old.slice(1);
      const next = old[0];
      const prev = run.previous();
      if (next && next.type === "message" && prev) {
        const continuation = prev.event.sender === next.event.sender && next.event.ts - prev.event.ts < RUN_MS && !prev.redacted;
        if (continuation !== next.continuation) old = [{ ...next, continuation }, ...old.slice(1)];
      }
    }
    const tiles = [...fresh, ...old];
    for (const tile of fresh) this.built.set(tile.key, tile);
    if (old[0] && old[0] !== last.tiles[1] && old[0] !== last.tiles[0]) this.built.set(old[0].key, old[0]);
    this.last = { ...last, events, oldest: page[0], tiles };
    return tiles;
  }

  /**
   * Tiles for events in timeline order: date separators, sender runs, notices; `push` and
   * `separate` go on from where the events stopped (the echoes of messages being sent).
   * @param {EventDoc[]} sorted @param {Relations} rel @param {Map<string, string[]>} readBy
   */
  tilesOf(sorted, rel, readBy) {
    /** @type {Tile[]} */
    const tiles = [];
    const built = this.built;
    /** @template {Tile} T @param {T} tile @returns {T} the previous build's tile when it is the same */
    const kept = (tile) => {
      const had = built.get(tile.key);
      return had && sameTile(had, tile) ? /** @type {T} */ (had) : tile;
    };
    let lastDay = "";
    /** @type {MessageTile | null} */
    let previous = null;
    /** @param {number} ts */
    const separate = (ts) => {
      const day = dayOf(ts);
      if (day !== lastDay) {
        tiles.push(kept({ type: "day", key: `day:${day}`, ts }));
        lastDay = day;
        previous = null;
      }
    };
    /** @param {MessageTile} tile */
    const push = (tile) => {
      const prev = /** @type {MessageTile | null} */ (previous);
      tile.continuation = !!prev && prev.event.sender === tile.event.sender && tile.event.ts - prev.event.ts < RUN_MS && !prev.redacted;
      const same = kept(tile);
      tiles.push(same);
      previous = same;
    };
    for (const ev of sorted) {
      if (ev.kind === "edit" || ev.kind === "reaction" || ev.kind === "redaction" || ev.kind === "other") continue;
      if (ev.kind === "member" || ev.kind === "state") {
        const line = notice(ev);
        if (line) {
          separate(ev.ts);
          tiles.push(kept({ type: "notice", key: ev.event_id, event: ev, ...line }));
          previous = null;
        }
        continue;
      }
      separate(ev.ts);
      const edit = rel.latestEdit.get(ev.event_id);
      const isRedacted = rel.redacted.has(ev.event_id);
      /** @type {Map<string, Reaction>} */
      const counts = new Map();
      for (const r of isRedacted ? [] : rel.reactions.get(ev.event_id) ?? []) {
        if (rel.redacted.has(r.event_id)) continue;
        const key = /** @type {string} */ (r.key);
        const entry = counts.get(key) ?? { key, count: 0, mine: null, senders: [] };
        if (entry.senders.includes(r.sender)) continue; // one reaction per key and sender
        entry.count += 1;
        entry.senders.push(r.sender);
        if (r.sender === this.ownUserId) entry.mine = r.event_id;
        counts.set(key, entry);
      }
      push({
        type: "message",
        key: ev.event_id,
        event: ev,
        body: isRedacted ? "" : edit ? edit.body : ev.body,
        html: isRedacted ? undefined : edit ? edit.html : ev.html,
        edited: !!edit && !isRedacted,
        redacted: isRedacted,
        undecryptable: ev.kind === "undecryptable",
        continuation: false,
        reactions: [...counts.values()],
        readBy: readBy.get(ev.event_id) ?? [],
        sending: null,
      });
    }
    return { tiles, separate, push, previous: () => /** @type {MessageTile | null} */ (previous) };
  }
}

/** @typedef {{redacted: Set<string>, latestEdit: Map<string, EventDoc>, reactions: Map<string, EventDoc[]>}} Relations */
/**
 * What the last build started from and gave, for the paging-back fast path.
 * @typedef {{events: Map<string, EventDoc>, pending: Pending[], receipts: Record<string, string>, oldest: EventDoc | undefined, rel: Relations, readBy: Map<string, string[]>, tiles: Tile[]}} LastBuild
 */

/**
 * Add the relations among `sorted` (in timeline order) to `rel`: redactions first (a
 * redacted edit or reaction counts for nothing), then edits (only the original sender's; a
 * later one wins) and reactions.
 * @param {Relations} rel @param {EventDoc[]} sorted @param {Map<string, EventDoc>} events
 */
function relate(rel, sorted, events) {
  for (const ev of sorted) {
    if (ev.kind === "redaction" && ev.relates_to) rel.redacted.add(ev.relates_to);
  }
  for (const ev of sorted) {
    if (rel.redacted.has(ev.event_id) || !ev.relates_to) continue;
    if (ev.kind === "edit") {
      const target = events.get(ev.relates_to);
      if (target && target.sender !== ev.sender) continue;
      const had = rel.latestEdit.get(ev.relates_to);
      if (!had || order(had, ev) < 0) rel.latestEdit.set(ev.relates_to, ev);
    } else if (ev.kind === "reaction" && ev.key) {
      const list = rel.reactions.get(ev.relates_to);
      if (list) list.push(ev);
      else rel.reactions.set(ev.relates_to, [ev]);
    }
  }
}

/** @param {readonly string[]} a @param {readonly string[]} b */
const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Whether two builds of a tile show the same thing (the event object is the store's, kept
 * by `add` until the server sends a new version of it).
 * @param {Tile} a @param {Tile} b
 */
export function sameTile(a, b) {
  if (a.type === "day" || b.type === "day") return a.type === b.type && a.key === b.key;
  if (a.type === "notice" || b.type === "notice") {
    return a.type === "notice" && b.type === "notice" && a.event === b.event && a.change === b.change && a.subject === b.subject;
  }
  return a.event === b.event && a.body === b.body && a.html === b.html && a.edited === b.edited && a.redacted === b.redacted &&
    a.undecryptable === b.undecryptable && a.continuation === b.continuation && a.sending === b.sending &&
    sameList(a.readBy, b.readBy) && a.reactions.length === b.reactions.length &&
    a.reactions.every((r, i) => {
      const o = b.reactions[i];
      return r.key === o.key && r.count === o.count && r.mine === o.mine && sameList(r.senders, o.senders);
    });
}
