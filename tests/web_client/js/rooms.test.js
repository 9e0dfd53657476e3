import { test } from "node:test";
import assert from "node:assert/strict";
import { RoomListViewModel, CreateRoomViewModel } from "../../../src/kumix/web/client/vm/rooms.js";

/** @param {Partial<import("../../../src/kumix/web/client/vm/rooms.js").RoomSummary> & {room_id: string}} r */
const room = (r) => ({ name: r.room_id, encrypted: false, membership: /** @type {const} */ ("join"), unread: 0, highlights: 0, direct: false, ...r });

const sample = () => [
  room({ room_id: "!space", name: "Work", space: true }),
  room({ room_id: "!a", name: "backend", parents: ["!space"], unread: 3, highlights: 1 }),
  room({ room_id: "!b", name: "Alpha", parents: ["!space"] }),
  room({ room_id: "!c", name: "cooking", unread: 2 }),
  room({ room_id: "!d", name: "Bob", direct: true, unread: 1 }),
  room({ room_id: "!e", name: "Party", membership: "invite", inviter: "@carol:x" }),
  room({ room_id: "!f", name: "gone", membership: "leave" }),
  room({ room_id: "!g", name: "orphan", parents: ["!unknown-space"] }),
];

test("home groups rooms by space, puts the rest under other rooms, and lists invites and DMs", () => {
  const vm = new RoomListViewModel();
  vm.apply(sample());
  const s = vm.sections.value;
  assert.deepEqual(s.invites.map((r) => r.room_id), ["!e"]);
  assert.deepEqual(s.direct.map((r) => r.room_id), ["!d"]);
  assert.deepEqual(s.groups.map((g) => [g.space.room_id, g.rooms.map((r) => r.room_id)]), [["!space", ["!b", "!a"]]],
    "in a space, sorted by name ignoring case");
  assert.deepEqual(s.other.map((r) => r.room_id), ["!c", "!g"], "a parent the account does not know is no space");
  assert.ok(!vm.order.value.some((r) => r.room_id === "!f" || r.room_id === "!space"));
});

test("a workspace shows only its rooms, and the switcher sums counts per space", () => {
  const vm = new RoomListViewModel();
  vm.apply(sample());
  vm.chooseWorkspace("!space");
  assert.deepEqual(vm.sections.value.groups.map((g) => g.rooms.map((r) => r.room_id)), [["!b", "!a"]]);
  assert.deepEqual(vm.sections.value.other, []);
  const [home, work] = vm.workspaces.value;
  assert.equal(home.space, null);
  assert.deepEqual([home.unread, home.highlights], [6, 1]);
  assert.deepEqual([work.space?.room_id, work.unread, work.highlights], ["!space", 3, 1]);
  // A space that disappears (left) sends the switcher back home.
  vm.apply(sample().filter((r) => r.room_id !== "!space"));
  assert.equal(vm.workspace.value, null);
});

test("a space groups the rooms it names as children, those naming it as parent, and its direct chats", () => {
  const vm = new RoomListViewModel();
  vm.apply([
    room({ room_id: "!s1", name: "Work", space: true, children: ["!x", "!dm", "!not-joined"] }),
    room({ room_id: "!s2", name: "Home life", space: true, children: ["!x", "!y"] }),
    room({ room_id: "!s3", name: "Left space", space: true, membership: "leave", children: ["!z"] }),
    room({ room_id: "!x", name: "shared" }),
    room({ room_id: "!y", name: "garden" }),
    room({ room_id: "!w", name: "wiki", parents: ["!s1"] }),
    room({ room_id: "!z", name: "zed" }),
    room({ room_id: "!dm", name: "Dana", direct: true }),
  ]);
  assert.deepEqual(vm.spaces.value.map((r) => r.room_id), ["!s2", "!s1"], "joined spaces only, by name");
  const home = vm.sections.value;
  // "shared" is in both spaces: listed once, under the first by name.
  assert.deepEqual(home.groups.map((g) => [g.space.name, g.rooms.map((r) => r.name)]),
    [["Home life", ["garden", "shared"]], ["Work", ["wiki"]]]);
  assert.deepEqual(home.other.map((r) => r.name), ["zed"], "a left space groups nothing");
  assert.deepEqual(home.direct.map((r) => r.name), ["Dana"]);
  assert.equal(new Set(vm.order.value.map((r) => r.room_id)).size, vm.order.value.length, "no room twice");
  vm.chooseWorkspace("!s1");
  const work = vm.sections.value;
  assert.deepEqual(work.groups.map((g) => g.rooms.map((r) => r.name)), [["shared", "wiki"]]);
  assert.deepEqual(work.direct.map((r) => r.name), ["Dana"]);
  assert.deepEqual(work.other, []);
  vm.chooseWorkspace("!s2");
  assert.deepEqual(vm.sections.value.direct, [], "a direct chat outside the space is not shown in it");
  const counts = vm.workspaces.value.map((w) => w.space?.room_id ?? "home");
  assert.deepEqual(counts, ["home", "!s2", "!s1"]);
  // The filter hides a space whose rooms it hides all.
  vm.chooseWorkspace(null);
  vm.filter.value = "garden";
  assert.deepEqual(vm.sections.value.groups.map((g) => g.space.name), ["Home life"]);
});

test("an invitation to a space is listed with the invites, and the space is no workspace until joined", () => {
  const vm = new RoomListViewModel();
  vm.apply([room({ room_id: "!sp", name: "Guild", space: true, membership: "invite", children: ["!r"] }), room({ room_id: "!r", name: "hall" })]);
  assert.deepEqual(vm.sections.value.invites.map((r) => r.room_id), ["!sp"]);
  assert.deepEqual(vm.workspaces.value.map((w) => w.space?.room_id ?? null), [null]);
  assert.deepEqual(vm.sections.value.other.map((r) => r.room_id), ["!r"]);
  vm.merge([room({ room_id: "!sp", name: "Guild", space: true, children: ["!r"] })]);
  assert.deepEqual(vm.sections.value.invites, []);
  assert.deepEqual(vm.sections.value.groups.map((g) => [g.space.room_id, g.rooms.map((r) => r.room_id)]), [["!sp", ["!r"]]]);
});

test("the filter matches name, alias and topic, case-insensitively", () => {
  const vm = new RoomListViewModel();
  vm.apply([...sample(), room({ room_id: "!h", name: "x", alias: "#Kitchen:x" })]);
  vm.filter.value = "  KITCH ";
  assert.deepEqual(vm.order.value.map((r) => r.room_id), ["!h"]);
  vm.filter.value = "o";
  assert.ok(vm.order.value.every((r) => /o/i.test(r.name + (r.alias ?? ""))));
});

test("keyboard moves wrap, and can skip to unread rooms only", () => {
  const vm = new RoomListViewModel();
  vm.apply(sample());
  const ids = vm.order.value.map((r) => r.room_id);
  assert.equal(vm.move(1), ids[0]);
  assert.equal(vm.move(-1), ids[ids.length - 1]);
  vm.select("!b");
  assert.equal(vm.move(1, { unreadOnly: true }), "!a");
  assert.equal(vm.move(1, { unreadOnly: true }), "!c");
});

test("hostile counts from the server cannot go negative or fractional", () => {
  const vm = new RoomListViewModel();
  vm.apply([room({ room_id: "!x", unread: -5, highlights: 2.7 })]);
  assert.deepEqual([vm.all.value[0].unread, vm.all.value[0].highlights], [0, 2]);
  vm.markRead("!x");
  assert.equal(vm.all.value[0].highlights, 0);
});

test("room creation checks its form before the server sees it", () => {
  const vm = new CreateRoomViewModel();
  assert.equal(vm.request(), null);
  assert.equal(vm.problem.value, "name_missing");
  vm.name.value = " Plans ";
  vm.invite.value = "@a:x, not-a-user";
  assert.equal(vm.request(), null);
  assert.equal(vm.problem.value, "invite_invalid");
  vm.invite.value = "@a:x @b:y";
  assert.deepEqual(vm.request(), { name: "Plans", topic: undefined, encrypted: true, invite: ["@a:x", "@b:y"] });
  vm.direct.value = true;
  assert.equal(vm.request(), null);
  assert.equal(vm.problem.value, "direct_needs_one");
  vm.invite.value = "@a:x";
  assert.deepEqual(vm.request(), { direct: true, invite: ["@a:x"], encrypted: true });
});

test("a rooms frame carries only the rooms that changed; a left one drops out of the list", () => {
  const vm = new RoomListViewModel();
  vm.apply(sample());
  const before = vm.order.value.length;
  vm.merge([room({ room_id: "!c", name: "cooking", unread: 9 }), room({ room_id: "!new", name: "Zebra" })]);
  assert.equal(vm.order.value.length, before + 1, "nothing else disappears");
  assert.equal(vm.byId.value.get("!c")?.unread, 9);
  vm.merge([room({ room_id: "!c", name: "cooking", membership: "leave" })]);
  assert.ok(!vm.order.value.some((r) => r.room_id === "!c"));
});

test("a full read of the list keeps the rooms frames that came while it was on its way", async () => {
  const vm = new RoomListViewModel();
  vm.apply([room({ room_id: "!old", name: "old" })]);
  /** @type {(rooms: ReturnType<typeof room>[]) => void} */
  let answer = () => undefined;
  const reading = vm.reload(() => new Promise((resolve) => { answer = resolve; }));
  // Frames while the answer (made before them) is on its way: a new room, and a rename.
  vm.merge([room({ room_id: "!new", name: "new" })]);
  vm.merge([room({ room_id: "!old", name: "renamed" })]);
  answer([room({ room_id: "!old", name: "old" }), room({ room_id: "!other", name: "other" })]);
  await reading;
  assert.deepEqual(vm.all.value.map((r) => [r.room_id, r.name]), [["!old", "renamed"], ["!other", "other"], ["!new", "new"]]);
  // Once read, the frames are no longer kept for it: the next read's answer stands alone.
  await vm.reload(async () => [room({ room_id: "!other", name: "other" })]);
  assert.deepEqual(vm.all.value.map((r) => r.room_id), ["!other"]);
  assert.equal(vm.reading.size, 0);
});

test("a failed read of the list changes nothing and keeps no frames", async () => {
  const vm = new RoomListViewModel();
  vm.apply([room({ room_id: "!a" })]);
  await assert.rejects(vm.reload(async () => { throw new Error("offline"); }), /offline/);
  assert.deepEqual(vm.all.value.map((r) => r.room_id), ["!a"]);
  assert.equal(vm.reading.size, 0);
});
