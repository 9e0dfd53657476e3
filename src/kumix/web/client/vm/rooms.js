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
 * @property {string | null} [avatar]  mxc:// URI of m.room.avatar (the bytes: GET /api/rooms/{id}/avatar)
 * @property {boolean} [space]  the room is a Matrix space (m.space)
 * @property {string[]} [children]  for a space: the rooms it groups (m.space.child)
 * @property {string[]} [parents]  ids of the spaces this room names as its parents (m.space.parent)
 */

/** @typedef {{space: RoomSummary, rooms: RoomSummary[]}} SpaceGroup */

/**
 * @typedef {object} RoomSections
 * @property {RoomSummary[]} invites
 * @property {RoomSummary[]} direct  direct chats (of the chosen space, on a workspace)
 * @property {SpaceGroup[]} groups  on "home" every space with its rooms; on a workspace its own
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

/**
 * `rooms` with each of the `changes` (in order) replacing its room's entry or added.
 * @param {RoomSummary[]} rooms @param {RoomSummary[][]} changes
 */
function overlaid(rooms, changes) {
  const byId = new Map(rooms.map((r) => [r.room_id, r]));
  for (const changed of changes) for (const room of changed) byId.set(room.room_id, room);
  return [...byId.values()];
}

export class RoomListViewModel {
  constructor() {
    /** @type {import("../vendor/signals-core.js").Signal<RoomSummary[]>} */
    this.all = signal([]);
    this.filter = signal("");
    /** null is "home": every room, with the ones in no space under "other rooms". */
    this.workspace = signal(/** @type {string | null} */ (null));
    this.selected = signal(/** @type {string | null} */ (null));
    /**
     * One list per full read of the room list in progress (`reload`): the "rooms" frames'
     * changes that arrived meanwhile.
     * @type {Set<RoomSummary[][]>}
     */
    this.reading = new Set();

    this.byId = computed(() => new Map(this.all.value.map((r) => [r.room_id, r])));
    this.spaces = computed(() => this.all.value.filter((r) => r.space && r.membership === "join").sort(byName));

    /**
     * Which rooms each joined space groups. A space names its rooms (m.space.child) and a room
     * may name its space (m.space.parent); either link is enough, as in other clients, since
     * a room's parent link is optional and a space's admin may not be the room's.
     * @type {import("../vendor/signals-core.js").ReadonlySignal<Map<string, Set<string>>>}
     */
    this.members = computed(() => {
      /** @type {Map<string, Set<string>>} */
      const members = new Map(this.spaces.value.map((sp) => [sp.room_id, new Set(sp.children ?? [])]));
      for (const r of this.all.value) {
        for (const p of r.parents ?? []) members.get(p)?.add(r.room_id);
      }
      return members;
    });

    /** @type {import("../vendor/signals-core.js").ReadonlySignal<Workspace[]>} */
    this.workspaces = computed(() => {
      const rooms = this.all.value.filter((r) => !r.space && r.membership === "join");
      /** @param {RoomSummary[]} list */
      const sum = (list) => ({
        unread: list.reduce((n, r) => n + r.unread, 0),
        highlights: list.reduce((n, r) => n + r.highlights, 0),
      });
      const members = this.members.value;
      return [
        { space: null, ...sum(rooms) },
        ...this.spaces.value.map((space) => ({ space, ...sum(rooms.filter((r) => members.get(space.room_id)?.has(r.room_id))) })),
      ];
    });

    /** @type {import("../vendor/signals-core.js").ReadonlySignal<RoomSections>} */
    this.sections = computed(() => {
      const needle = this.filter.value.trim().toLocaleLowerCase();
      const ws = this.workspace.value;
      const members = this.members.value;
      const visible = this.all.value.filter((r) => !r.space && r.membership !== "leave" && matches(r, needle));
      // An invitation to a space is answered like one to a room; once joined it is a workspace.
      const invites = this.all.value.filter((r) => r.membership === "invite" && matches(r, needle)).sort(byName);
      const joined = visible.filter((r) => r.membership === "join");
      /** @param {RoomSummary} space @returns {SpaceGroup} */
      const group = (space) => {
        const mine = members.get(space.room_id) ?? new Set();
        return { space, rooms: joined.filter((r) => !r.direct && mine.has(r.room_id)).sort(byName) };
      };
      if (ws !== null) {
        const space = this.byId.value.get(ws);
        const mine = members.get(ws) ?? new Set();
        return {
          invites,
          direct: joined.filter((r) => r.direct && mine.has(r.room_id)).sort(byName),
          groups: space ? [group(space)] : [],
          other: [],
        };
      }
      // A room in two spaces is listed once, under the first of them (by name): a row is one
      // option with one id, and the keyboard visits it once.
      const placed = new Set();
      const groups = [];
      for (const space of this.spaces.value) {
        const g = group(space);
        g.rooms = g.rooms.filter((r) => !placed.has(r.room_id) && placed.add(r.room_id));
        // A space whose rooms the filter hides all is not shown.
        if (g.rooms.length) groups.push(g);
      }
      return {
        invites,
        direct: joined.filter((r) => r.direct).sort(byName),
        groups,
        other: joined.filter((r) => !r.direct && !placed.has(r.room_id)).sort(byName),
      };
    });

    /** Rooms in the order the list shows them, for keyboard moves. */
    this.order = computed(() => {
      const s = this.sections.value;
      return [...s.invites, ...s.direct, ...s.groups.flatMap((g) => g.rooms), ...s.other];
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
    for (const arrived of this.reading) arrived.push(changed);
    this.apply(overlaid(this.all.value, [changed]));
  }

  /**
   * The whole list read again (`read`: GET /api/rooms). The server may have made its answer
   * before a change whose "rooms" frame reached the page while that answer was on its way
   * (or waiting for the other answers of the page's start): applied alone, the older list
   * would put the older state back, and a room created meanwhile would be gone from the
   * page for good, since no frame comes for it again. So the frames that arrived during the
   * read are merged over the answer again, in the order they came.
   * @param {() => Promise<RoomSummary[]>} read
   */
  async reload(read) {
    /** @type {RoomSummary[][]} */
    const arrived = [];
    this.reading.add(arrived);
    try {
      this.apply(overlaid(await read(), arrived));
    } finally {
      this.reading.delete(arrived);
    }
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
