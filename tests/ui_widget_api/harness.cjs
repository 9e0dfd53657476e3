// An Element-style widget (matrix-widget-api's WidgetApi, unmodified, client origin "*")
// behind Kumix's host-page gate (FrameBridge), with the server on the other end of stdio:
// stdout lines {loaded} / {forward: raw} / {unload} / {done: results}, stdin lines {deliver: message}.
"use strict";
const path = require("node:path");
const readline = require("node:readline");
const { pathToFileURL } = require("node:url");

const widgetId = process.argv[2];
const send = (doc) => process.stdout.write(`${JSON.stringify(doc)}\n`);
console.log = () => {};  // WidgetApi logs every message; stdout is the protocol

// The frame's realm: its own event target, `parent` is the host page.
const frameTarget = new EventTarget();
globalThis.addEventListener = frameTarget.addEventListener.bind(frameTarget);
globalThis.removeEventListener = frameTarget.removeEventListener.bind(frameTarget);
const frameWindow = { what: "the frame's contentWindow as the host page sees it" };

(async () => {
  const bridgePath = path.resolve(__dirname, "../../src/kumix/web/client/bridge/frame-bridge.js");
  const { FrameBridge } = await import(pathToFileURL(bridgePath).href);
  const bridge = new FrameBridge({ widgetId, frameWindow, limits: { maxMessageBytes: 65536, maxMessagesPerSecond: 50 } });

  const toFrame = (message) => setImmediate(() => {
    const event = new Event("message");
    Object.assign(event, { data: structuredClone(message), origin: "http://127.0.0.1:8765" });
    frameTarget.dispatchEvent(event);
  });
  const run = (outcomes) => {
    for (const out of outcomes) {
      if (out.kind === "forward") send({ forward: out.raw });
      else if (out.kind === "post") toFrame(out.message);
      else if (out.kind === "unload") send({ unload: out.reason });
    }
  };
  globalThis.parent = {
    postMessage: (message) => run(bridge.receive({ source: frameWindow, origin: "null", data: structuredClone(message) },
      performance.now())),
  };
  readline.createInterface({ input: process.stdin }).on("line", (line) => run(bridge.fromServer(JSON.parse(line).deliver)));

  // The browserify bundle exports a function that returns the package's exports.
  const bundle = require("./vendor/matrix-widget-api.min.js");
  const { WidgetApi } = typeof bundle === "function" ? bundle() : bundle;
  const api = new WidgetApi(widgetId, "*");
  api.requestCapabilityToReceiveEvent("m.room.message");
  api.requestCapability("io.kumix.theme_tokens");
  api.requestCapabilityToSendEvent("m.room.encrypted");
  api.requestCapabilityForRoomTimeline("!other:localhost");
  api.on("ready", async () => {
    const results = { approved: api.approvedCapabilities ?? null };
    results.events = await api.readRoomEvents("m.room.message", 10);
    results.tokens = await api.transport.send("io.kumix.theme_tokens", {});
    try { await api.sendRoomEvent("m.room.message", { msgtype: "m.text", body: "x" }); results.send = "sent"; }
    catch (error) { results.send = String(error.message); }
    try { await api.requestOpenIDConnectToken(); results.openid = "got"; }
    catch (error) { results.openid = String(error.message); }
    send({ done: results, dropped: bridge.dropped });
    process.exit(0);
  });
  api.start();
  send({ loaded: true });
})();
