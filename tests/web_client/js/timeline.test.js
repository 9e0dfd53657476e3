import { test } from "node:test";
import assert from "node:assert/strict";
import { TimelineViewModel, dayOf, RUN_MS, notice } from "../../../src/kumix/web/client/vm/timeline.js";

const ROOM = "!r:x";
const ME = "@me:x";
let seq = 0;
/** @param {Partial<import("../../../src/kumix/web/client/vm/timeline.js").EventDoc>} e */
const ev = (e) => {
  seq += 1;
  return { event_id: `$${seq}`, room_id: ROOM, sender: "@bob:x", ts: Date.UTC(2026, 0, 5, 10, 0) + seq * 1000, kind: /** @type {const} */ ("text"), body: `m${seq}`, encrypted: false, cursor: seq, ...e };
};
const messages = (/** @type {TimelineViewModel} */ vm) => vm.tiles.value.filter((t) => t.type === "message");

test("edits show the latest text with the edited mark; only the sender's own edits count", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  const m = ev({ event_id: "$m", body: "helo" });
  vm.add([m, ev({ kind: "edit", relates_to: "$m", body: "hello" }), ev({ kind: "edit", relates_to: "$m", body: "hello!" }),
    ev({ kind: "edit", relates_to: "$m", body: "pwned", sender: "@mallory:x" })]);
  const [tile] = messages(vm);
  assert.equal(tile.type === "message" && tile.body, "hello!");
  assert.equal(tile.type === "message" && tile.edited, true);
  assert.equal(messages(vm).length, 1, "edits are no tiles of their own");
});

test("reactions are counted once per sender and key, and mine carries the id to undo it", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ event_id: "$m" }), ev({ kind: "reaction", relates_to: "$m", key: "👍" }), ev({ kind: "reaction", relates_to: "$m", key: "👍" }),
    ev({ event_id: "$mine", kind: "reaction", relates_to: "$m", key: "👍", sender: ME }), ev({ kind: "reaction", relates_to: "$m", key: "🎉" })]);
  const [tile] = messages(vm);
  assert.ok(tile.type === "message");
  assert.deepEqual(tile.reactions.map((r) => [r.key, r.count, r.mine]), [["👍", 2, "$mine"], ["🎉", 1, null]]);
  // Redacting my reaction removes it from the count.
  vm.add([ev({ kind: "redaction", relates_to: "$mine", sender: ME })]);
  const [after] = messages(vm);
  assert.ok(after.type === "message");
  assert.deepEqual(after.reactions.map((r) => [r.key, r.count, r.mine]), [["👍", 1, null], ["🎉", 1, null]]);
});

test("a redacted message keeps its place but loses its text, edits and reactions", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ event_id: "$m", html: "<b>x</b>" }), ev({ kind: "edit", relates_to: "$m", body: "y" }), ev({ kind: "reaction", relates_to: "$m", key: "a" }),
    ev({ kind: "redaction", relates_to: "$m" })]);
  const [tile] = messages(vm);
  assert.ok(tile.type === "message");
  assert.deepEqual([tile.redacted, tile.body, tile.html, tile.edited, tile.reactions.length], [true, "", undefined, false, 0]);
});

test("an undecryptable message is replaced in place when its key arrives", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ event_id: "$e", kind: "undecryptable", body: "", encrypted: true, cursor: 7 })]);
  let [tile] = messages(vm);
  assert.ok(tile.type === "message" && tile.undecryptable);
  // The "changed" frame for the same event id, decrypted; the cursor is kept.
  vm.add([{ type: "changed", cursor: 7, event: { ...ev({ event_id: "$e", body: "secret", encrypted: true }), cursor: undefined } }]);
  [tile] = messages(vm);
  assert.ok(tile.type === "message");
  assert.deepEqual([tile.undecryptable, tile.body, tile.event.cursor], [false, "secret", 7]);
});

test("date separators fall between local days, and sender runs break on a new day or a pause", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  const t0 = new Date(2026, 0, 5, 23, 58).getTime();
  vm.add([ev({ ts: t0 }), ev({ ts: t0 + 60_000 }), ev({ ts: t0 + 3 * 60_000 }), ev({ ts: t0 + 3 * 60_000 + RUN_MS + 1 })]);
  const kinds = vm.tiles.value.map((t) => (t.type === "message" ? (t.continuation ? "cont" : "msg") : t.type));
  assert.deepEqual(kinds, ["day", "msg", "cont", "day", "msg", "msg"]);
  assert.equal(dayOf(t0), "2026-1-5");
});

test("events of other rooms and malformed items are ignored", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ room_id: "!other:x" }), /** @type {any} */ ({ nonsense: true }), null]);
  assert.equal(vm.tiles.value.length, 0);
});

test("paging back asks before the oldest cursor, dedupes, and stops at the start", async () => {
  /** @type {(number | undefined)[]} */
  const asked = [];
  const older = [ev({ cursor: 1, event_id: "$old1" }), ev({ cursor: 2, event_id: "$old2" })];
  const vm = new TimelineViewModel(ROOM, ME, async (before) => {
    asked.push(before);
    return before === 10 ? older : before === 1 ? [older[0]] : [];
  });
  vm.add([ev({ cursor: 10 }), ev({ cursor: 11 })]);
  assert.equal(await vm.loadOlder(), true);
  assert.equal(await vm.loadOlder(), false, "only already-known events came back");
  assert.equal(vm.hasMore.value, false);
  assert.equal(await vm.loadOlder(), false);
  assert.deepEqual(asked, [10, 1]);
  assert.deepEqual(messages(vm).map((t) => t.type === "message" && t.event.cursor), [1, 2, 10, 11]);
});

test("a failing page keeps what was loaded and says why", async () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => { throw new Error("offline"); });
  vm.add([ev({})]);
  assert.equal(await vm.loadOlder(), false);
  assert.equal(vm.error.value, "offline");
  assert.equal(vm.loading.value, false);
  assert.equal(messages(vm).length, 1);
});

test("a local echo shows at once, is marked sent or failed, and gives way to the real event", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.echo("t1", "hi", null, Date.now());
  let [tile] = messages(vm);
  assert.ok(tile.type === "message");
  assert.deepEqual([tile.sending, tile.body, tile.event.sender], ["sending", "hi", ME]);
  vm.updateEcho("t1", { state: "sent", eventId: "$real" });
  [tile] = messages(vm);
  assert.ok(tile.type === "message" && tile.sending === "sent");
  vm.add([ev({ event_id: "$real", sender: ME, body: "hi" })]);
  assert.equal(messages(vm).length, 1);
  [tile] = messages(vm);
  assert.ok(tile.type === "message" && tile.sending === null && tile.key === "$real");
  vm.echo("t2", "lost", null, Date.now());
  vm.updateEcho("t2", { state: "failed", error: "boom" });
  assert.ok(messages(vm).some((t) => t.type === "message" && t.sending === "failed"));
});

test("read receipts sit on their event (not mine), typing excludes me, Up finds my last message", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ event_id: "$1", sender: ME, body: "mine" }), ev({ event_id: "$2" })]);
  vm.applyReceipts({ "@bob:x": "$2", [ME]: "$2", "@carol:x": "$1" });
  const tiles = messages(vm);
  assert.deepEqual(tiles.map((t) => t.type === "message" && t.readBy), [["@carol:x"], ["@bob:x"]]);
  vm.applyTyping([ME, "@bob:x"]);
  assert.deepEqual(vm.typingOthers.value, ["@bob:x"]);
  assert.equal(vm.lastOwnMessage.value?.event.event_id, "$1");
  assert.equal(vm.indexOf("$2"), 2);
});

test("10 000 messages build into tiles with unique keys", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  const many = Array.from({ length: 10_000 }, (_, i) => ev({ ts: Date.UTC(2026, 0, 1) + i * 60_000 }));
  vm.add(many);
  const tiles = vm.tiles.value;
  assert.equal(tiles.filter((t) => t.type === "message").length, 10_000);
  assert.equal(new Set(tiles.map((t) => t.key)).size, tiles.length);
});

test("an echo the outbox only queued gives way to the own message with the same text", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.echo("t1", "same", null, Date.now());
  vm.echo("t2", "same", null, Date.now());
  vm.echo("t3", "other", null, Date.now());
  vm.add([ev({ sender: "@bob:x", body: "same" })]);
  assert.equal(vm.pending.value.length, 3, "someone else's message replaces no echo");
  vm.add([ev({ sender: ME, body: "same" })]);
  assert.deepEqual(vm.pending.value.map((p) => p.txn), ["t2", "t3"], "one arrival, one echo: the oldest");
});

test("member and visible state events become notices; the rest of the room's state shows nothing", () => {
  assert.deepEqual(notice(ev({ kind: "member", body: "@bob:x invite" })), { change: "invite", subject: "@bob:x" });
  assert.deepEqual(notice(ev({ kind: "state", body: "m.room.name", sender: "@al:x" })), { change: "name", subject: "@al:x" });
  assert.equal(notice(ev({ kind: "state", body: "m.room.power_levels" })), null);
  assert.equal(notice(ev({ kind: "member", body: "@bob:x knock-knock" })), null);
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ kind: "state", body: "m.room.join_rules" }), ev({ kind: "state", body: "m.room.guest_access" })]);
  assert.equal(vm.tiles.value.length, 0, "no notice, and no date separator for nothing");
  vm.add([ev({ kind: "member", body: "@bob:x join" })]);
  assert.deepEqual(vm.tiles.value.map((t) => t.type), ["day", "notice"]);
});

test("Up does not reach past an own message still being sent; a quote shows its target's latest text", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  vm.add([ev({ event_id: "$old", sender: ME, body: "old" }), ev({ kind: "edit", relates_to: "$old", sender: ME, body: "old, fixed" })]);
  assert.equal(vm.lastOwnMessage.value?.body, "old, fixed");
  vm.echo("t1", "new", "$old", Date.now());
  assert.equal(vm.lastOwnMessage.value, null, "editing 'old' now would surprise: the newest is 'new'");
  assert.equal(vm.byEventId.value.get("$old")?.body, "old, fixed");
  // Acknowledged with its event id (the event itself not synced yet): Up edits it.
  vm.updateEcho("t1", { state: "sent", eventId: "$new" });
  const editable = vm.lastOwnMessage.peek(); // peek: tsc narrowed .value to null above
  assert.equal(editable && editable.event.event_id, "$new");
});

test("pages go on from the position the server's page names, and a changed event keeps its place", async () => {
  /** @type {(number | undefined)[]} */
  const asked = [];
  const vm = new TimelineViewModel(ROOM, ME, async (before) => {
    asked.push(before);
    if (before === undefined) return { events: [{ cursor: 90, event: ev({ event_id: "$b", ts: 2000 }) }, { cursor: 91, event: ev({ event_id: "$c", ts: 3000 }) }], before: 40 };
    if (before === 40) return { events: [{ cursor: 12, event: ev({ event_id: "$a", ts: 1000 }) }], before: 12 };
    return { events: [], before: null };
  });
  await vm.loadOlder();
  await vm.loadOlder();
  await vm.loadOlder();
  assert.deepEqual(asked, [undefined, 40, 12], "positions, not the events' change cursors");
  assert.equal(vm.hasMore.value, false);
  // $a changes (say its key arrived): a newer change cursor must not move it to the end.
  vm.add([{ type: "event", cursor: 500, event: ev({ event_id: "$a", ts: 1000, body: "now readable" }) }]);
  assert.deepEqual(messages(vm).map((t) => t.type === "message" && t.event.event_id), ["$a", "$b", "$c"]);
});

test("paging back page by page gives the tiles a single build of every event gives, and keeps unchanged tiles", () => {
  // Oldest first: two days, sender runs across the page seams, a pause, a notice, relations
  // in both directions (an edit, a reaction and a redaction newer than their targets, some of
  // whose targets arrive only with an older page), an edit by someone else, a redacted reaction.
  const day1 = Date.UTC(2026, 0, 5, 23, 50);
  /** @type {any[]} */
  const all = [];
  for (let i = 0; i < 230; i++) {
    const ts = day1 + i * 20_000 + (i > 100 ? 3600_000 : 0);
    const sender = i % 7 < 4 ? "@bob:x" : ME;
    all.push({ event_id: `$p${i}`, room_id: ROOM, sender, ts, kind: "text", body: `m${i}`, encrypted: false, cursor: i });
  }
  all.push({ event_id: "$n", room_id: ROOM, sender: "@bob:x", ts: day1 + 61 * 20_000 + 1, kind: "member", body: "@carol:x join", encrypted: false, cursor: 61.5 });
  const late = day1 + 300 * 20_000 + 3600_000;
  const rel = (/** @type {any} */ e, /** @type {number} */ n) => ({ room_id: ROOM, sender: "@bob:x", ts: late + n, encrypted: false, cursor: 1000 + n, body: "", ...e });
  all.push(rel({ event_id: "$e1", kind: "edit", relates_to: "$p3", body: "edited 3" }, 1));
  all.push(rel({ event_id: "$e2", kind: "edit", relates_to: "$p4", body: "not yours", sender: "@mallory:x" }, 2));
  all.push(rel({ event_id: "$r1", kind: "reaction", relates_to: "$p10", key: "👍" }, 3));
  all.push(rel({ event_id: "$r2", kind: "reaction", relates_to: "$p10", key: "👍", sender: ME }, 4));
  all.push(rel({ event_id: "$x1", kind: "redaction", relates_to: "$r2", sender: ME }, 5));
  all.push(rel({ event_id: "$x2", kind: "redaction", relates_to: "$p200" }, 6));
  all.push(rel({ event_id: "$r3", kind: "reaction", relates_to: "$p150", key: "🎉" }, 7));
  // A reaction that sorts before newer messages (clock skew): its page comes after its target's.
  all.push(rel({ event_id: "$r4", kind: "reaction", relates_to: "$p120", key: "👀", ts: all[125].ts + 1 }, 8));
  const newestFirst = [...all].sort((a, b) => b.ts - a.ts);

  const one = (/** @type {import("../../../src/kumix/web/client/vm/timeline.js").Tile} */ t) => JSON.stringify(t.type === "message"
    ? [t.key, t.body, t.edited, t.redacted, t.continuation, t.reactions.map((r) => [r.key, r.count, r.mine])]
    : [t.key]);
  const show = (/** @type {TimelineViewModel} */ vm) => vm.tiles.value.map(one);

  const whole = new TimelineViewModel(ROOM, ME, async () => []);
  whole.add(all);
  const paged = new TimelineViewModel(ROOM, ME, async () => []);
  const prepend = paged.prepend.bind(paged);
  let fast = 0;
  let full = 0;
  paged.prepend = (last, added, events) => {
    const tiles = prepend(last, added, events);
    if (tiles) fast += 1;
    else full += 1;
    return tiles;
  };
  /** @type {Map<string, any>} */
  let before = new Map();
  let kept = 0;
  for (let at = 0; at < newestFirst.length; at += 50) {
    paged.add(newestFirst.slice(at, at + 50));
    const tiles = paged.tiles.value;
    const once = new TimelineViewModel(ROOM, ME, async () => []);
    once.add(newestFirst.slice(0, at + 50));
    assert.deepEqual(show(paged), show(once), `after ${at + 50} events`);
    // A tile that was there and shows the same is the same object (the view skips its row).
    for (const tile of tiles) {
      const had = before.get(tile.key);
      if (had && one(had) === one(tile)) {
        assert.equal(tile, had, `tile ${tile.key} was rebuilt without a change`);
        kept += 1;
      }
    }
    before = new Map(tiles.map((t) => [t.key, t]));
  }
  assert.ok(kept > 400, `only ${kept} tiles were kept`);
  assert.deepEqual(show(paged), show(whole));
  assert.ok(fast >= 3 && full >= 1, `pages built on the previous tiles: ${fast}, in full: ${full}`);
  const p3 = messages(paged).find((t) => t.key === "$p3");
  assert.ok(p3 && p3.type === "message" && p3.body === "edited 3" && p3.edited);
});

test("a read receipt names the room's newest event, a reaction after the last message included", () => {
  const vm = new TimelineViewModel(ROOM, ME, async () => []);
  assert.equal(vm.newestEventId.value, null);
  vm.add([ev({ event_id: "$a" }), ev({ event_id: "$b" })]);
  assert.equal(vm.newestEventId.value, "$b");
  vm.add([ev({ event_id: "$r", kind: "reaction", relates_to: "$a", key: "🎉" })]);
  assert.equal(vm.newestEventId.value, "$r");
  assert.equal(messages(vm).at(-1)?.event.event_id, "$b", "the reaction is no tile of its own");
});
