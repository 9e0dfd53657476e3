import { test } from "node:test";
import assert from "node:assert/strict";
import { ComposerViewModel } from "../../../src/kumix/web/client/vm/composer.js";

/** @param {{fail?: boolean, last?: {eventId: string, body: string} | null}} [o] */
function make(o = {}) {
  /** @type {any[]} */
  const calls = [];
  const vm = new ComposerViewModel({
    send: async (text, replyTo) => { calls.push(["send", text, replyTo]); if (o.fail) throw new Error("refused"); },
    edit: async (id, text) => { calls.push(["edit", id, text]); if (o.fail) throw new Error("refused"); },
    lastOwn: () => (o.last === undefined ? { eventId: "$last", body: "old text" } : o.last),
  });
  return { vm, calls };
}
const key = (/** @type {string} */ k, extra = {}) => ({ key: k, shiftKey: false, isComposing: false, ...extra });

test("Enter sends, Shift+Enter adds a line, an IME composition's Enter does neither", () => {
  const { vm } = make();
  assert.equal(vm.keyAction(key("Enter")), "send");
  assert.equal(vm.keyAction(key("Enter", { shiftKey: true })), "newline");
  assert.equal(vm.keyAction(key("Enter", { isComposing: true })), null);
});

test("Up in an empty composer edits the last own message; Esc cancels and clears the edit", async () => {
  const { vm, calls } = make();
  assert.equal(vm.keyAction(key("ArrowUp")), "edit-last");
  assert.equal(vm.editLast(), true);
  assert.deepEqual([vm.mode.value, vm.text.value], [{ kind: "edit", eventId: "$last" }, "old text"]);
  assert.equal(vm.keyAction(key("ArrowUp")), null, "Up moves the caret once there is text");
  assert.equal(vm.keyAction(key("Escape")), "cancel");
  vm.cancel();
  assert.deepEqual([vm.mode.value.kind, vm.text.value], ["new", ""]);
  vm.startEdit("$last", "old text");
  vm.text.value = "new text";
  assert.equal(await vm.submit(), true);
  assert.deepEqual(calls, [["edit", "$last", "new text"]]);
});

test("Up with no own message does nothing", () => {
  const { vm } = make({ last: null });
  assert.equal(vm.editLast(), false);
  assert.equal(vm.mode.value.kind, "new");
});

test("a reply is sent with its target, and the composer empties at once", async () => {
  const { vm, calls } = make();
  vm.replyTo("$q");
  vm.text.value = "yes";
  const done = vm.submit();
  assert.equal(vm.text.value, "", "cleared before the server answers: the timeline has the echo");
  assert.equal(await done, true);
  assert.deepEqual(calls, [["send", "yes", "$q"]]);
  assert.equal(vm.mode.value.kind, "new");
});

test("blank text is never sent; a failed edit goes back into the composer", async () => {
  const { vm, calls } = make({ fail: true });
  vm.text.value = "  \n ";
  assert.equal(vm.canSend.value, false);
  assert.equal(await vm.submit(), false);
  assert.deepEqual(calls, []);
  vm.startEdit("$last", "fixed");
  assert.equal(await vm.submit(), false);
  assert.deepEqual([vm.text.value, vm.mode.value.kind, vm.error.value], ["fixed", "edit", "refused"]);
});

test("upload progress is clamped to the file's size", () => {
  const { vm } = make();
  const id = vm.startUpload("cat.png", 100);
  vm.updateUpload(id, { sent: 250 });
  assert.equal(vm.uploads.value[0].sent, 100);
  vm.updateUpload(id, { state: "done" });
  vm.dismissUpload(id);
  assert.deepEqual(vm.uploads.value, []);
});

test("the preview shows the server's rendering of the text still in the composer, and nothing stale", async () => {
  /** @type {{text: string, resolve: (html: string | null) => void}[]} */
  const asked = [];
  const vm = new ComposerViewModel({
    send: async () => undefined, edit: async () => undefined, lastOwn: () => null,
    render: (text) => new Promise((resolve) => { asked.push({ text, resolve }); }),
  });
  vm.text.value = "**one**";
  const first = vm.togglePreview();
  assert.deepEqual([vm.preview.value, vm.rendered.value], [true, { state: "loading", text: "**one**" }]);
  assert.equal(vm.keyAction(key("Escape")), "cancel", "Esc closes the preview");
  // The text changes before the answer comes: the late answer is dropped.
  vm.text.value = "**two**";
  const second = vm.refreshPreview();
  asked[0].resolve("<p><strong>one</strong></p>");
  await first;
  assert.deepEqual(vm.rendered.value, { state: "loading", text: "**two**" });
  asked[1].resolve("<p><strong>two</strong></p>");
  await second;
  assert.deepEqual(vm.rendered.value, { state: "shown", text: "**two**", html: "<p><strong>two</strong></p>" });
  await vm.refreshPreview();
  assert.equal(asked.length, 2, "the same text is not rendered twice");
  await vm.togglePreview(false);
  assert.deepEqual(vm.rendered.value, { state: "off" });
  vm.schedulePreview();
  assert.equal(vm.previewTimer, undefined, "no rendering while the preview is off");
});

test("a failed preview says so; sending closes the preview", async () => {
  let fail = true;
  const vm = new ComposerViewModel({
    send: async () => undefined, edit: async () => undefined, lastOwn: () => null,
    render: async () => { if (fail) throw new Error("extension denied"); return null; },
  });
  vm.text.value = "plain words";
  await vm.togglePreview(true);
  assert.deepEqual(vm.rendered.value, { state: "failed", text: "plain words", error: "extension denied" });
  fail = false;
  await vm.refreshPreview();
  assert.deepEqual(vm.rendered.value, { state: "shown", text: "plain words", html: null }, "null: sent as plain text");
  await vm.submit();
  assert.deepEqual([vm.preview.value, vm.rendered.value], [false, { state: "off" }]);
});

test("upload progress is kept within the file's size and the upload can be dismissed", () => {
  const { vm } = make();
  const id = vm.startUpload("photo.png", 1000);
  vm.updateUpload(id, { sent: 400 });
  assert.deepEqual([vm.uploads.value[0].sent, vm.uploads.value[0].state], [400, "uploading"]);
  vm.updateUpload(id, { sent: 5000 });
  assert.equal(vm.uploads.value[0].sent, 1000);
  vm.updateUpload(id, { state: "failed", error: "too large" });
  vm.dismissUpload(id);
  assert.deepEqual(vm.uploads.value, []);
});
