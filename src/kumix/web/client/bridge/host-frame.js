// The I/O around one FrameBridge: listens on the host window, posts only to the frame's
// window, hands accepted messages to `forward` (the session's WebSocket). The decisions
// are all in frame-bridge.js (sans-I/O, tested by node --test); this wires it to the DOM.

import { FrameBridge } from "./frame-bridge.js";

/**
 * @typedef {{ widgetId: string, limits: import("./frame-bridge.js").Limits }} Mounted
 * @param {{ iframe: HTMLIFrameElement, mounted: Mounted, forward: (raw: string) => void,
 *           onUnload: (reason: string) => void, hostWindow?: Window }} options
 * @returns {{ bridge: FrameBridge, deliver: (message: unknown) => void, close: () => void }}
 */
export function connectFrame({ iframe, mounted, forward, onUnload, hostWindow = window }) {
  const frameWindow = iframe.contentWindow;
  if (frameWindow === null) throw new Error("connectFrame needs a mounted iframe");
  const bridge = new FrameBridge({ widgetId: mounted.widgetId, frameWindow, limits: mounted.limits });

  /** @param {import("./frame-bridge.js").Outcome[]} outcomes */
  const run = (outcomes) => {
    for (const outcome of outcomes) {
      if (outcome.kind === "post") frameWindow.postMessage(outcome.message, "*");
      else if (outcome.kind === "forward") forward(outcome.raw);
      else if (outcome.kind === "unload") { close(); onUnload(outcome.reason); }
    }
  };
  /** @param {MessageEvent} event */
  const listener = (event) => run(bridge.receive(event, performance.now()));
  hostWindow.addEventListener("message", listener);
  const close = () => hostWindow.removeEventListener("message", listener);
  return { bridge, deliver: (message) => run(bridge.fromServer(message)), close };
}
