import { test } from "node:test";
import assert from "node:assert/strict";
import { FrameBridge, UNLOAD_AFTER_OVERSIZED, UNLOAD_AFTER_WINDOWS, jsonLengthAtLeast } from "../../../src/kumix/web/client/bridge/frame-bridge.js";

const TOKEN = "tok-aaaaaaaaaaaaaaaaaaaaaa";
const frame = { name: "the frame's window" };
const limits = { maxMessageBytes: 1024, maxMessagesPerSecond: 5 };

/** @param {Partial<{ maxMessageBytes: number, maxMessagesPerSecond: number }>} [overrides] */
const bridge = (overrides = {}) => new FrameBridge({ widgetId: TOKEN, frameWindow: frame, limits: { ...limits, ...overrides } });

/**
 * @param {string} requestId
 * @param {Record<string, unknown>} [extra]
 */
const request = (requestId = "r1", extra = {}) =>
  ({ api: "fromWidget", widgetId: TOKEN, requestId, action: "content_loaded", data: {}, ...extra });

/**
 * @param {unknown} data
 * @param {unknown[]} rest [source, origin]; absent means the frame's window and "null"
 */
const fromFrame = (data, ...rest) => ({ source: rest.length > 0 ? rest[0] : frame, origin: rest.length > 1 ? rest[1] : "null", data });

test("bridge: a request from the frame's window, origin null, with its token is forwarded as JSON", () => {
  const b = bridge();
  const [out] = b.receive(fromFrame(request()), 0);
  assert.equal(out.kind, "forward");
  assert.deepEqual(JSON.parse(/** @type {{ raw: string }} */ (out).raw), request());
  assert.deepEqual(b.dropped, {});
});

test("bridge: no token, a wrong token, another frame's token are dropped and counted", () => {
  const b = bridge();
  const { widgetId: _unused, ...noToken } = request();
  for (const data of [noToken, request("r", { widgetId: "wrong" }), request("r", { widgetId: "tok-of-another-frame-bbbbbb" })]) {
    assert.deepEqual(b.receive(fromFrame(data), 0), [{ kind: "drop", reason: "wrong_token" }]);
  }
  assert.equal(b.dropped.wrong_token, 3);
});

test("bridge: a nested, detached or foreign window with the right token is dropped (identity is the window)", () => {
  const b = bridge();
  // The attack is real against a filter like ClientWidgetApi's, which looks at the token
  // (and a caller might add the origin): this message passes both.
  const forged = fromFrame(request(), { name: "nested about:blank" });
  assert.equal(forged.origin === "null" && /** @type {{ widgetId: string }} */ (forged.data).widgetId === TOKEN, true);
  for (const source of [{ name: "nested about:blank" }, null, undefined, { name: "detached" }, globalThis]) {
    assert.deepEqual(b.receive(fromFrame(request(), source), 0), [{ kind: "drop", reason: "wrong_window" }]);
  }
  assert.equal(b.dropped.wrong_window, 5);
});

test("bridge: a spoofed origin is dropped even from the right window; an origin field in the data counts for nothing", () => {
  const b = bridge();
  for (const origin of ["http://127.0.0.1:8765", "https://evil.example", "", null]) {
    assert.equal(b.receive(fromFrame(request(), frame, origin), 0)[0].kind, "drop");
  }
  assert.equal(b.dropped.wrong_origin, 4);
  const spoof = b.receive(fromFrame(request("r", { origin: "http://127.0.0.1:8765" })), 0);
  assert.equal(spoof[0].kind, "forward");  // forwarded as data; the server ignores the field
});

test("bridge: non-objects, cycles, BigInt and malformed envelopes are dropped", () => {
  const b = bridge({ maxMessagesPerSecond: 1000 });
  /** @type {Record<string, unknown>} */
  const cyclic = request();
  cyclic.self = cyclic;
  const hostile = ["a string", 42, null, [request()], cyclic, request("r", { data: { n: 10n } }),
    request(""), request("x".repeat(200)), request("r", { action: 7 }), request("r", { api: "toWidget" }),
    request("r", { api: "fromWidget", response: {} }), request("r", { api: "somethingElse" })];
  for (const data of hostile) {
    assert.equal(b.receive(fromFrame(data), 0)[0].kind, "drop", JSON.stringify(typeof data));
  }
  assert.equal(Object.values(b.dropped).reduce((a, n) => a + n, 0), hostile.length);
});

test("bridge: the frame's answer to a host request (toWidget with response) is forwarded", () => {
  const b = bridge();
  const answer = { api: "toWidget", widgetId: TOKEN, requestId: "kumix-capabilities-1", action: "capabilities",
    data: {}, response: { capabilities: ["io.kumix.theme_tokens"] } };
  assert.equal(b.receive(fromFrame(answer), 0)[0].kind, "forward");
});

test("bridge: an oversized body (10 MB) gets one error reply, is never forwarded", () => {
  const b = bridge({ maxMessageBytes: 65536 });
  const big = request("big", { data: { pad: "x".repeat(10 * 1024 * 1024) } });
  const [out] = b.receive(fromFrame(big), 0);
  assert.equal(out.kind, "post");
  assert.equal(out.kind, "post");
  const message = /** @type {{ requestId: string, response: { error: Record<string, string> } }} */ (
    /** @type {unknown} */ (/** @type {{ message: unknown }} */ (out).message));
  assert.equal(message.requestId, "big");
  assert.equal(message.response.error["io.kumix.code"], "input_too_large");
  assert.equal(b.dropped.too_large, 1);
  // Multi-byte text is measured in UTF-8 bytes, not UTF-16 units.
  const wide = bridge({ maxMessageBytes: 1024 });
  assert.equal(wide.receive(fromFrame(request("w", { data: { pad: "é".repeat(600) } })), 0)[0].kind, "post");
});

test("bridge: a flood gets one error, then drops, then unloads at twice the rate; nothing more passes", () => {
  const b = bridge();
  /** @type {string[]} */
  const kinds = [];
  for (let i = 0; i < 11; i += 1) kinds.push(b.receive(fromFrame(request(`r${i}`)), 500)[0]?.kind ?? "none");
  assert.deepEqual(kinds, ["forward", "forward", "forward", "forward", "forward", "post", "drop", "drop", "drop", "drop", "unload"]);
  assert.equal(b.unloaded, true);
  assert.deepEqual(b.receive(fromFrame(request("late")), 60_000), [{ kind: "drop", reason: "unloaded" }]);
  assert.deepEqual(b.fromServer(request("late")), [{ kind: "drop", reason: "unloaded" }]);
});

test("bridge: 10 000 messages in one second forward only the rate and unload the frame", () => {
  const b = bridge({ maxMessagesPerSecond: 50 });
  let forwarded = 0;
  let unloads = 0;
  for (let i = 0; i < 10_000; i += 1) {
    for (const out of b.receive(fromFrame(request(`f${i}`)), 1000 + i / 10)) {
      if (out.kind === "forward") forwarded += 1;
      if (out.kind === "unload") unloads += 1;
    }
  }
  assert.equal(forwarded, 50);
  assert.equal(unloads, 1);
});

test("bridge: steady over-rate unloads after the configured number of seconds; within the rate never", () => {
  const b = bridge();
  let last = "";
  for (let second = 0; second < UNLOAD_AFTER_WINDOWS; second += 1) {
    for (let i = 0; i < 6; i += 1) last = b.receive(fromFrame(request(`${second}-${i}`)), second * 1000)[0]?.kind ?? "none";
  }
  assert.equal(last, "unload");
  const calm = bridge();
  for (let second = 0; second < 20; second += 1) {
    for (let i = 0; i < 5; i += 1) assert.equal(calm.receive(fromFrame(request(`${second}-${i}`)), second * 1000)[0].kind, "forward");
  }
});

test("bridge: messages from the server are posted only with this frame's token", () => {
  const b = bridge();
  assert.equal(b.fromServer({ api: "toWidget", widgetId: TOKEN, requestId: "x", action: "capabilities", data: {} })[0].kind, "post");
  assert.equal(b.fromServer({ api: "toWidget", widgetId: "other", requestId: "x", action: "capabilities" })[0].kind, "drop");
  assert.equal(b.fromServer("text")[0].kind, "drop");
});

test("bridge: a short token or a missing window is refused at construction", () => {
  assert.throws(() => new FrameBridge({ widgetId: "short", frameWindow: frame, limits }), TypeError);
  assert.throws(() => new FrameBridge({ widgetId: TOKEN, frameWindow: null, limits }), TypeError);
});

test("bridge: an oversized message with a huge action or requestId gets nothing echoed back", () => {
  const b = bridge({ maxMessageBytes: 1024 });
  const [out] = b.receive(fromFrame(request("ok", { action: "a".repeat(5000) })), 0);
  assert.equal(out.kind, "post");
  assert.equal(/** @type {{ message: { action: string } }} */ (/** @type {unknown} */ (out)).message.action, "");
  assert.deepEqual(b.receive(fromFrame(request("r".repeat(5000))), 0), []);
  assert.equal(b.dropped.too_large, 2);
});

test("bridge: a frame that keeps sending oversized messages is unloaded", () => {
  const b = bridge({ maxMessageBytes: 1024 });
  const big = () => fromFrame(request("big", { data: { pad: "x".repeat(5000) } }));
  for (let i = 1; i < UNLOAD_AFTER_OVERSIZED; i += 1) assert.equal(b.receive(big(), 0)[0].kind, "post");
  const [out] = b.receive(big(), 0);
  assert.equal(out.kind, "unload");
  assert.equal(b.unloaded, true);
  assert.deepEqual(b.receive(fromFrame(request()), 0), [{ kind: "drop", reason: "unloaded" }]);
});

test("bridge: the size bound is a lower bound of the JSON and refuses without serializing", () => {
  const samples = [
    {}, [], "", 0, null, true, { a: "b" }, ["x", 1, null, { k: [1, 2, "三"] }], { "é": "\u2028\"quoted\"" },
    { api: "fromWidget", widgetId: TOKEN, requestId: "r", action: "a", data: { list: [1, 2, 3], nested: { deep: {} } } },
  ];
  for (const value of samples) {
    assert.ok(jsonLengthAtLeast(value, 1e9) <= JSON.stringify(value).length, JSON.stringify(value));
  }
  // A cycle (structured clone allows them) is walked once: small, then refused by JSON.
  /** @type {Record<string, unknown>} */
  const cyclic = {};
  cyclic.self = cyclic;
  assert.ok(jsonLengthAtLeast(cyclic, 1000) < 1000);
  // An oversized body is refused whether or not it could be serialized.
  const b = bridge({ maxMessageBytes: 1024 });
  const big = request("c", { data: { cyclic, pad: "x".repeat(2000), n: 10n } });
  assert.equal(b.receive(fromFrame(big), 0)[0].kind, "post");
  assert.equal(b.dropped.too_large, 1);
  // A million-item array is over after looking at its length only.
  assert.ok(jsonLengthAtLeast(new Array(1_000_000).fill(0), 1024) > 1024);
});
