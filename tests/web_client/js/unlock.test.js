import { test } from "node:test";
import assert from "node:assert/strict";
import { UnlockViewModel } from "../../../src/kumix/web/client/vm/unlock.js";
import { AppViewModel } from "../../../src/kumix/web/client/vm/app.js";
import { ApiError } from "../../../src/kumix/web/client/lib/api.js";

test("unlock: a wrong passphrase keeps the code and clears the field; the right one opens", async () => {
  /** @type {string[]} */
  const tried = [];
  const vm = new UnlockViewModel(async (passphrase) => {
    tried.push(passphrase);
    if (passphrase !== "right") throw new ApiError("wrong_passphrase", "does not open", 403);
  });
  assert.equal(vm.ready.value, false, "nothing typed yet");
  vm.passphrase.value = "wrong";
  assert.equal(await vm.submit(), false);
  assert.equal(vm.problem.value?.code, "wrong_passphrase");
  assert.equal(vm.passphrase.value, "", "a wrong passphrase is not kept");
  assert.equal(vm.ready.value, false);
  vm.passphrase.value = "right";
  assert.equal(await vm.submit(), true);
  assert.equal(vm.problem.value, null);
  assert.equal(vm.passphrase.value, "");
  assert.deepEqual(tried, ["wrong", "right"]);
});

test("app: a locked vault shows the unlock screen, not an account, until the unlock answers", async () => {
  const account = { user_id: "@a:x", device_id: "D", homeserver: "http://x" };
  /** @type {[string, unknown][]} */
  const calls = [];
  const api = /** @type {any} */ ({
    /** @param {string} path */
    get: async (path) => {
      calls.push(["GET", path]);
      if (path === "/api/whoami") return { logged_in: true, vault_locked: true, account };
      if (path === "/api/rooms") return { rooms: [] };
      return {};
    },
    /** @param {string} path @param {unknown} body */
    send: async (path, body) => {
      calls.push(["POST", path]);
      assert.deepEqual(body, { passphrase: "p" });
      return { logged_in: true, vault_locked: false, account };
    },
  });
  const app = new AppViewModel(api);
  await app.start();
  assert.deepEqual(app.locked.value, account);
  assert.equal(app.account.value, null, "no account (so no event feed) while locked");
  assert.deepEqual(calls, [["GET", "/api/whoami"]], "nothing else is asked while locked");
  app.unlock.passphrase.value = "p";
  assert.equal(await app.unlock.submit(), true);
  assert.equal(app.locked.value, null);
  assert.deepEqual(app.account.value, account);
  assert.ok(calls.some(([m, p]) => m === "GET" && p === "/api/rooms"), "the rooms load after the unlock");
});

test("app: after a reconnect the room list is read again (the feed replays timeline events only)", async () => {
  let reads = 0;
  const api = /** @type {any} */ ({
    /** @param {string} path */
    get: async (path) => {
      if (path === "/api/rooms") {
        reads += 1;
        return { rooms: [{ room_id: "!new:x", name: "Made while away", membership: "join" }] };
      }
      return {};
    },
    send: async () => ({}),
  });
  const app = new AppViewModel(api);
  app.onFrame({ type: "hello", connection: "first", cursor: 0 });
  assert.equal(reads, 0, "the first connection reads nothing more");
  app.onFrame({ type: "hello", connection: "second", cursor: 0 });
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(reads, 1);
  assert.deepEqual(app.rooms.all.value.map((/** @type {any} */ r) => r.room_id), ["!new:x"]);
});
