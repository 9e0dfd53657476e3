import { test } from "node:test";
import assert from "node:assert/strict";
import { LoginViewModel } from "../../../src/kumix/web/client/vm/login.js";
import { ThemeViewModel } from "../../../src/kumix/web/client/vm/theme.js";
import { ExtensionsViewModel } from "../../../src/kumix/web/client/vm/extensions.js";
import { SearchViewModel } from "../../../src/kumix/web/client/vm/search.js";
import { ApiError, withQuery, roomPath } from "../../../src/kumix/web/client/lib/api.js";
import { echoState, receiptMap } from "../../../src/kumix/web/client/vm/app.js";

test("login: a bare homeserver gets https, a token replaces user and password, secrets are cleared", async () => {
  /** @type {Record<string, string>[]} */
  const sent = [];
  const vm = new LoginViewModel(async (body) => { sent.push(body); });
  vm.homeserver.value = "example.org";
  vm.user.value = "alice";
  assert.equal(vm.ready.value, false);
  vm.password.value = "pw";
  assert.equal(await vm.submit(), true);
  vm.method.value = "token";
  vm.token.value = " syt_x ";
  vm.homeserver.value = "http://127.0.0.1:8008";
  assert.equal(await vm.submit(), true);
  assert.deepEqual(sent, [{ homeserver: "https://example.org", user: "alice", password: "pw" }, { homeserver: "http://127.0.0.1:8008", access_token: "syt_x" }]);
  assert.deepEqual([vm.password.value, vm.token.value], ["", ""]);
});

test("login: the server's error code is kept, and a locked vault asks for its passphrase", async () => {
  let code = "unauthorized";
  const vm = new LoginViewModel(async () => { throw new ApiError(code, "Invalid password", 401); });
  vm.homeserver.value = "x";
  vm.user.value = "a";
  vm.password.value = "b";
  assert.equal(await vm.submit(), false);
  assert.deepEqual(vm.problem.value, { code: "unauthorized", message: "Invalid password" });
  // The server has no key source for a new vault: it says so before any device exists.
  vm.login = async () => { throw new ApiError("unauthorized", "no way to protect the vault", 401, { reason: "vault_passphrase_required" }); };
  await vm.submit();
  assert.equal(vm.needsVaultKey.value, true);
  assert.equal(vm.problem.value?.code, "vault_passphrase_required");
  assert.equal(vm.ready.value, false, "needs the passphrase now");
  vm.vaultKey.value = "k";
  assert.equal(vm.ready.value, false, "and typed twice");
  vm.vaultKeyAgain.value = "j";
  assert.equal(vm.vaultMismatch.value, true);
  assert.equal(vm.ready.value, false);
  vm.vaultKeyAgain.value = "k";
  assert.equal(vm.vaultMismatch.value, false);
  assert.equal(vm.ready.value, true);
  assert.equal(vm.body().vault_passphrase, "k");
});

test("theme follows the system unless chosen, and drops token values that could load or escape", () => {
  const vm = new ThemeViewModel();
  vm.tokens.value = {
    light: { "color-bg": "#fff", "font-body": "system-ui, sans-serif", evil: "url(http://x/)", "bad name": "red", brace: "red}body{x:y" },
    dark: { "color-bg": "#000" },
  };
  assert.deepEqual(vm.properties.value, [["--color-bg", "#fff"], ["--font-body", "system-ui, sans-serif"]]);
  vm.systemDark.value = true;
  assert.deepEqual(vm.properties.value, [["--color-bg", "#000"]]);
  vm.choose("light");
  assert.equal(vm.effective.value, "light");
  vm.choose("nonsense");
  assert.equal(vm.choice.value, "system");
});

test("extensions: figures come from the store's shape, denied ones are marked, only external ones need grants", () => {
  const vm = new ExtensionsViewModel();
  vm.apply([
    { id: "markdown", name: "Markdown", origin: "bundled", state: "enabled", reason: "allowed by policy", capabilities: ["render.markdown"],
      figures: { calls: 5, ok: 4, timeouts: 1, crashes: 0, restarts: 2, errors: { internal: 1, bad: -3 }, latencies: [0.004, 0.001, 0.002, "x", -1] } },
    { id: "ext", name: "External", origin: "external", state: "denied", reason: "not granted", capabilities: ["proc.call", "room.context.read"], granted: ["proc.call"] },
  ]);
  const [md, ext] = vm.rows.value;
  assert.deepEqual(md.figures, { calls: 5, errors: 1, timeouts: 1, restarts: 2, p50_ms: 2, p99_ms: 4 });
  assert.deepEqual([md.bundled, md.enabled, md.denied, md.ungranted], [true, true, false, []]);
  assert.deepEqual([ext.bundled, ext.denied, ext.ungranted], [false, true, ["room.context.read"]]);
  assert.deepEqual(ext.figures, { calls: 0, errors: 0, timeouts: 0, restarts: 0, p50_ms: null, p99_ms: null });
  vm.applyFigures({ ext: { calls: 3, latencies: [0.01] } });
  assert.deepEqual([vm.rows.value[1].figures.calls, vm.rows.value[1].figures.p99_ms], [3, 10]);
});

test("a send's outbox answer decides its echo: sent with an event id, queued, or failed", () => {
  assert.deepEqual(echoState({ txn_id: "t", room_id: "!r", state: "sent", event_id: "$e" }), { state: "sent", eventId: "$e", error: null });
  assert.deepEqual(echoState({ txn_id: "t", room_id: "!r", state: "pending", event_id: null }), { state: "sending", eventId: null, error: null });
  assert.deepEqual(echoState({ txn_id: "t", room_id: "!r", state: "failed", error: "M_FORBIDDEN" }), { state: "failed", eventId: null, error: "M_FORBIDDEN" });
  assert.equal(echoState(null).state, "failed");
});

test("search drops an answer that arrives after a newer query", async () => {
  /** @type {Record<string, (v: any[]) => void>} */
  const waiting = {};
  const vm = new SearchViewModel((q) => new Promise((resolve) => { waiting[q] = resolve; }));
  vm.query.value = "old";
  const first = vm.run();
  vm.query.value = "new";
  const second = vm.run();
  waiting.new([{ event_id: "$new" }]);
  await second;
  waiting.old([{ event_id: "$old" }]);
  await first;
  assert.deepEqual(vm.results.value, [{ event_id: "$new" }]);
});

test("api paths escape room ids and drop empty query values", () => {
  assert.equal(roomPath("!a/b:x"), "/api/rooms/!a%2Fb%3Ax");
  assert.equal(withQuery("/api/search", { q: "a b", room: undefined }), "/api/search?q=a+b");
});

test("receipts frames: the server's list becomes user → event, private receipts and junk left out", () => {
  assert.deepEqual(receiptMap([
    { user_id: "@bob:x", event_id: "$2", type: "m.read", ts: 1 },
    { user_id: "@me:x", event_id: "$3", type: "m.read.private", ts: 2 },
    null, { user_id: 5, event_id: "$4" }, "x",
  ]), { "@bob:x": "$2" });
});
