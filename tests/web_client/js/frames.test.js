import { test } from "node:test";
import assert from "node:assert/strict";
import { FramesViewModel, describeSend } from "../../../src/kumix/web/client/vm/frames.js";

/** @param {string} widgetId @param {string} extensionId @param {string} roomId */
const answer = (widgetId, extensionId, roomId) => ({
  widgetId, extensionId, roomId, srcdoc: "<p>x</p>", sandbox: "allow-scripts", referrerPolicy: "no-referrer", allow: "",
  limits: { maxMessageBytes: 65536, maxMessagesPerSecond: 50 },
});

function setup() {
  /** @type {Record<string, unknown>[]} */
  const sent = [];
  /** @type {string[]} */
  const navigated = [];
  let n = 0;
  const vm = new FramesViewModel({
    mount: async (extensionId, roomId) => answer(`w${++n}-${extensionId}`, extensionId, roomId),
    enabled: async () => [{ id: "poll", name: "Polls" }, { id: "github-panel", name: "GitHub" }],
    send: (frame) => { sent.push(frame); return true; },
    navigate: (uri) => navigated.push(uri),
  });
  return { vm, sent, navigated };
}

test("a room's enabled UI extensions mount; another room's go; a closed one stays closed there", async () => {
  const { vm, sent } = setup();
  await vm.show("!a");
  assert.deepEqual(vm.mounted.value.map((m) => m.answer.extensionId), ["poll", "github-panel"]);
  const [poll] = vm.mounted.value;
  vm.close(poll.answer.widgetId);
  assert.deepEqual(sent.at(-1), { type: "bridge_unload", widget_id: poll.answer.widgetId });
  assert.deepEqual(vm.hidden.value.map((e) => e.id), ["poll"]);
  await vm.show("!b");
  assert.deepEqual(vm.mounted.value.map((m) => [m.answer.extensionId, m.answer.roomId]), [["poll", "!b"], ["github-panel", "!b"]]);
  await vm.show("!a");
  assert.deepEqual(vm.mounted.value.map((m) => m.answer.extensionId), ["github-panel"]);
  await vm.reopen("poll");
  // Shown in the order the extensions are listed, whichever mount finished first.
  assert.deepEqual(vm.mounted.value.map((m) => m.answer.extensionId), ["poll", "github-panel"]);
});

test("bridge frames reach only the frame they name; asks queue and are answered in order", async () => {
  const { vm, sent, navigated } = setup();
  await vm.show("!a");
  const [first, second] = vm.mounted.value;
  /** @type {unknown[]} */
  const got = [];
  vm.attached(first.answer.widgetId, { deliver: (m) => got.push(m), unload: () => undefined });
  vm.attached(second.answer.widgetId, { deliver: () => assert.fail("delivered to the wrong frame"), unload: () => undefined });
  vm.onFrame({ type: "bridge", widget_id: first.answer.widgetId, message: { api: "toWidget" } });
  vm.onFrame({ type: "bridge", widget_id: "not-mounted", message: { api: "toWidget" } });
  assert.deepEqual(got, [{ api: "toWidget" }]);
  vm.onFrame({ type: "bridge_ask", widget_id: first.answer.widgetId, request_id: "r1", event_type: "org.matrix.msc3381.poll.response",
               content: { "org.matrix.msc3381.poll.response": { answers: ["a"] } }, poll: { question: "Lunch?", answers: ["Yes"] } });
  vm.onFrame({ type: "bridge_ask", widget_id: first.answer.widgetId, request_id: "r2", event_type: "m.room.message",
               content: { msgtype: "m.text", body: "<b>hi</b>" } });
  vm.onFrame({ type: "bridge_ask", widget_id: first.answer.widgetId, request_id: "bad", event_type: "m.room.message", content: "x" });
  assert.equal(vm.asks.value.length, 2);
  assert.deepEqual(vm.ask.value?.poll, { question: "Lunch?", answers: ["Yes"] });
  vm.answer(true, true);
  assert.deepEqual(sent.at(-1), { type: "bridge_answer", widget_id: first.answer.widgetId, request_id: "r1", approved: true, always: true });
  assert.deepEqual(describeSend(/** @type {any} */ (vm.ask.value)), { kind: "message", text: "<b>hi</b>" });
  vm.answer(false, true);  // declining never remembers "always"
  assert.deepEqual(sent.at(-1), { type: "bridge_answer", widget_id: first.answer.widgetId, request_id: "r2", approved: false, always: false });
  vm.onFrame({ type: "navigate", uri: "https://matrix.to/#/!b:x" });
  assert.deepEqual(navigated, ["https://matrix.to/#/!b:x"]);
  vm.onFrame({ type: "bridge_unload", widget_id: second.answer.widgetId, reason: "more than 50 messages a second" });
  assert.deepEqual(vm.mounted.value.map((m) => m.answer.widgetId), [first.answer.widgetId]);
  assert.match(String(vm.notice.value), /50 messages/);
});

test("a mount already asked for is never asked twice", async () => {
  const { vm } = setup();
  vm.roomId.value = "!a";
  const ext = { id: "poll", name: "Polls" };
  await Promise.all([vm.mountOne(ext, "!a"), vm.mountOne(ext, "!a")]);
  assert.deepEqual(vm.mounted.value.map((m) => m.answer.extensionId), ["poll"]);
});

test("a new event connection drops every frame (the server ended them with the old one)", async () => {
  const { vm } = setup();
  await vm.show("!a");
  let unloaded = 0;
  for (const m of vm.mounted.value) vm.attached(m.answer.widgetId, { deliver: () => undefined, unload: () => { unloaded += 1; } });
  vm.dropAll();
  assert.equal(unloaded, 2);
  assert.deepEqual(vm.mounted.value, []);
});

test("a frame the view took out of the page is unloaded and mounted anew, with a new token, when the pane shows", async () => {
  const { vm, sent } = setup();
  await vm.show("!a");
  const [poll] = vm.mounted.value;
  vm.attached(poll.answer.widgetId, { deliver: () => undefined, unload: () => assert.fail("the view unloaded it already") });
  vm.detached(poll.answer.widgetId);
  assert.deepEqual(sent.at(-1), { type: "bridge_unload", widget_id: poll.answer.widgetId });
  assert.equal(vm.mounted.value.some((m) => m.answer.extensionId === "poll"), false, "not while the pane is away");
  vm.paneShown();
  await new Promise((resolve) => setTimeout(resolve, 0));
  const again = vm.mounted.value.find((m) => m.answer.extensionId === "poll");
  assert.ok(again, "mounted again once the pane is back");
  assert.notEqual(again.answer.widgetId, poll.answer.widgetId, "never the same token for a second document");
  // A frame closed by the person is not brought back by its iframe going.
  vm.close(again.answer.widgetId);
  vm.detached(again.answer.widgetId);
  vm.paneShown();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(vm.mounted.value.some((m) => m.answer.extensionId === "poll"), false);
});
