import { test } from "node:test";
import assert from "node:assert/strict";
import { LoginViewModel } from "../../../src/kumix/web/client/vm/login.js";
import { ThemeViewModel } from "../../../src/kumix/web/client/vm/theme.js";
import { ExtensionsViewModel } from "../../../src/kumix/web/client/vm/extensions.js";
import { SearchViewModel } from "../../../src/kumix/web/client/vm/search.js";
import { ApiError, withQuery, roomPath } from "../../../src/kumix/web/client/lib/api.js";

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
  code = "vault_locked";
  await vm.submit();
  assert.equal(vm.needsVaultKey.value, true);
  assert.equal(vm.ready.value, false, "needs the passphrase now");
  vm.vaultKey.value = "k";
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

test("extensions: figures are sanitized, denied ones are marked, ungranted capabilities listed", () => {
  const vm = new ExtensionsViewModel();
  vm.apply([
    { id: "md", name: "Markdown", kind: "proc", bundled: true, enabled: true, state: "running", capabilities: ["markdown.render"] },
    { id: "ext", name: "External", kind: "proc", bundled: false, enabled: false, state: "denied", reason: "not granted", capabilities: ["proc.call", "room.context.read"], granted: ["proc.call"] },
  ]);
  vm.applyFigures({ md: { calls: 5, errors: -1, p50_ms: 1.5, p99_ms: "x" } });
  const [md, ext] = vm.rows.value;
  assert.deepEqual(md.figures, { calls: 5, errors: 0, timeouts: 0, restarts: 0, p50_ms: 1.5, p99_ms: null });
  assert.deepEqual([ext.denied, ext.ungranted], [true, ["room.context.read"]]);
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
