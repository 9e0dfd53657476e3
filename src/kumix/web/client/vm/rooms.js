// Room list state: spaces as workspaces, direct chats, invites, counts and the filter box.
// No DOM and no strings for people here: the views translate (lib/i18n.js).
import { signal, computed, batch } from "../vendor/signals-core.js";

/**
 * A room as the server lists it (GET /api/rooms, and the WebSocket's "rooms" frames).
 * `space` and `parents` are optional: a server that does not send them shows every room
 * under "other rooms".
 * @typedef {object} RoomSummary
 * @property {string} room_id
 * @property {string} name
 * @property {string | null} [topic]
 * @property {boolean} encrypted
 * @property {"join" | "invite" | "leave"} membership
 * @property {number} unread
 * @property {number} highlights
 * @property {boolean} direct
 * @property {string | null} [alias]
 * @property {string | null} [inviter]
 * @property {boolean} [space]  the room is a Matrix space (m.space)
 * @property {string[]} [parents]  ids of the spaces this room belongs to
 */

/**
 * @typedef {object} RoomSections
 * @property {RoomSummary[]} invites
 * @property {RoomSummary[]} direct
 * @property {RoomSummary[]} rooms  rooms of the selected space, or of no space on "home"
 * @property {RoomSummary[]} other  on "home": the rooms that belong to no space
 */

/** @typedef {{space: RoomSummary | null, unread: number, highlights: number}} Workspace */

const collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

/** @param {RoomSummary} a @param {RoomSummary} b */
function byName(a, b) {
  return collator.compare(a.name || a.room_id, b.name || b.room_id) || (a.room_id < b.room_id ? -1 : 1);
}

/** @param {RoomSummary} room @param {string} needle */
function matches(room, needle) {
  if (!needle) return true;
  const hay = `${room.name}\n${room.alias ?? ""}\n${room.room_id}\n${room.topic ?? ""}`.toLocaleLowerCase();
  return hay.includes(needle);
}

export class RoomListViewModel {
  constructor() {
    /** @type {import("../vendor/signals-core.js").Signal<RoomSummary[]>} */
    this.all = signal([]);
    this.filter = signal("");
    /** null is "home": every room, with the ones in no space under "other rooms". */
    this.workspace = signal(/** @type {string | null} */ (null));
    this.selected = signal(/** @type {string | null} */ (null));

    this.byId = computed(() => new Map(this.all.value.map((r) => [r.room_id, r])));
    this.spaces = computed(() => this.all.value.filter((r) => r.space && r.membership === "join").sort(byName));

    /** @type {import("../vendor/signals-core.js").ReadonlySignal<Workspace[]>} */
    this.workspaces = computed(() => {
      const rooms = this.all.value.filter((r) => !r.space && r.membership === "join");
      /** @param {RoomSummary[]} list */
      const sum = (list) => ({
        unread: list.reduce((n, r) => n + r.unread, 0),
        highlights: list.reduce((n, r) => n + r.highlights, 0),
      });
      return [
        { space: null, ...sum(rooms) },
        ...this.spaces.value.map((space) => ({ space, ...sum(rooms.filter((r) => r.parents?.includes(space.room_id))) })),
      ];
    });

    /** @type {import("../vendor/signals-core.js").ReadonlySignal<RoomSections>} */
    this.sections = computed(() => {
      const needle = this.filter.value.trim().toLocaleLowerCase();
      const ws = this.workspace.value;
      const known = new Set(this.spaces.value.map((s) => s.room_id));
      const visible = this.all.value.filter((r) => !r.space && r.membership !== "leave" && matches(r, needle));
      const inSpace = (/** @type {RoomSummary} */ r) => (r.parents ?? []).some((p) => known.has(p));
      const invites = visible.filter((r) => r.membership === "invite").sort(byName);
      const joined = visible.filter((r) => r.membership === "join");
      if (ws !== null) {
        const mine = joined.filter((r) => r.parents?.includes(ws));
        return { invites, direct: mine.filter((r) => r.direct).sort(byName), rooms: mine.filter((r) => !r.direct).sort(byName), other: [] };
      }
      return {
        invites,
        direct: joined.filter((r) => r.direct).sort(byName),
        rooms: joined.filter((r) => !r.direct && inSpace(r)).sort(byName),
        other: joined.filter((r) => !r.direct && !inSpace(r)).sort(byName),
      };
    });

    /** Rooms in the order the list shows them, for keyboard moves. */
    this.order = computed(() => {
      const s = this.sections.value;
      return [...s.invites, ...s.direct, ...s.rooms, ...s.other];
    });
    this.current = computed(() => (this.selected.value ? this.byId.value.get(this.selected.value) ?? null : null));
  }

  /** @param {RoomSummary[]} rooms  the full list (GET /api/rooms) */
  apply(rooms) {
    batch(() => {
      this.all.value = rooms.map((r) => ({ ...r, unread: Math.max(0, r.unread | 0), highlights: Math.max(0, r.highlights | 0) }));
      if (this.workspace.value && !this.byId.value.has(this.workspace.value)) this.workspace.value = null;
    });
  }

  /**
   * Rooms that changed (the WebSocket's "rooms" frames carry only those, left ones included):
   * each replaces its old entry or is added.
   * @param {RoomSummary[]} changed
   */
  merge(changed) {
    const byId = new Map(this.all.value.map((r) => [r.room_id, r]));
    for (const room of changed) byId.set(room.room_id, room);
    this.apply([...byId.values()]);
  }

  /** @param {string | null} roomId */
  select(roomId) {
    this.selected.value = roomId;
  }

  /** @param {string | null} spaceId */
  chooseWorkspace(spaceId) {
    this.workspace.value = spaceId;
  }

  /**
   * Move the selection by delta through the visible rooms (Alt+Up / Alt+Down), wrapping.
   * @param {number} delta @param {{unreadOnly?: boolean}} [options]
   */
  move(delta, options = {}) {
    const list = options.unreadOnly ? this.order.value.filter((r) => r.unread > 0 || r.room_id === this.selected.value) : this.order.value;
    if (!list.length) return null;
    const at = list.findIndex((r) => r.room_id === this.selected.value);
    const next = at < 0 ? (delta > 0 ? 0 : list.length - 1) : (at + delta + list.length) % list.length;
    this.selected.value = list[next].room_id;
    return this.selected.value;
  }

  /** Clear a room's counts at once when it is read here; the server's next list confirms. @param {string} roomId */
  markRead(roomId) {
    this.all.value = this.all.value.map((r) => (r.room_id === roomId ? { ...r, unread: 0, highlights: 0 } : r));
  }
}

/**
 * The room-creation form: what the server's POST /api/rooms takes, checked before sending.
 */
export class CreateRoomViewModel {
  constructor() {
    this.name = signal("");
    this.topic = signal("");
    this.encrypted = signal(true);
    this.direct = signal(false);
    this.invite = signal("");
    this.problem = signal(/** @type {"name_missing" | "invite_invalid" | "direct_needs_one" | null} */ (null));
    /** The server's refusal, in its own words. */
    this.failure = signal(/** @type {string | null} */ (null));
  }

  /** The request body, or null with `problem` set. */
  request() {
    const invite = this.invite.value.split(/[\s,]+/).filter(Boolean);
    /** @type {"name_missing" | "invite_invalid" | "direct_needs_one" | null} */
    let problem = null;
    if (invite.some((u) => !/^@[^:\s]+:\S+$/.test(u))) problem = "invite_invalid";
    else if (this.direct.value && invite.length !== 1) problem = "direct_needs_one";
    else if (!this.direct.value && !this.name.value.trim()) problem = "name_missing";
    this.problem.value = problem;
    if (problem) return null;
    return this.direct.value
      ? { direct: true, invite, encrypted: this.encrypted.value }
      : { name: this.name.value.trim(), topic: this.topic.value.trim() || undefined, encrypted: this.encrypted.value, invite };
  }
}
