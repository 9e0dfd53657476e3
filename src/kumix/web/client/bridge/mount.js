// Mounting one UI frame in the host page, from the server's mount answer
// (kumix.app.ui_frames.MountedFrame.to_json()).
//
// The srcdoc goes through a Trusted Types policy of its own ("kumix-frame"): the page's
// "kumix" policy sanitizes HTML for display with DOMPurify, which would take a frame
// document apart. This policy passes exactly the documents the server handed to
// mountFrame, each once, and nothing else, so no other string can become a frame.

import { connectFrame } from "./host-frame.js";

export const FRAME_POLICY_NAME = "kumix-frame";

/** @typedef {{ widgetId: string, extensionId: string, roomId: string, srcdoc: string, sandbox: string,
 *              referrerPolicy: string, allow: string,
 *              limits: import("./frame-bridge.js").Limits }} MountAnswer */

/** @type {Set<string>} */
const handedOver = new Set();
/** @type {{ createHTML: (input: string) => TrustedHTML | string } | null} */
let policy = null;

function framePolicy() {
  if (policy) return policy;
  const createHTML = (/** @type {string} */ input) => {
    if (!handedOver.has(input)) throw new TypeError("not a frame document from the server");
    handedOver.delete(input);
    return input;
  };
  const factory = typeof window === "undefined" ? undefined : window.trustedTypes;
  policy = factory ? factory.createPolicy(FRAME_POLICY_NAME, { createHTML }) : { createHTML };
  return policy;
}

/**
 * @param {HTMLElement} container where the iframe goes
 * @param {MountAnswer} mounted
 * @param {{ forward: (raw: string) => void, onUnload: (reason: string) => void, onLoad: () => void }} io
 *   `forward`: a bridge message for the server; `onLoad`: ask the server to start the
 *   capability negotiation; `onUnload`: the bridge unloaded a flooding frame.
 */
export function mountFrame(container, mounted, { forward, onUnload, onLoad }) {
  const iframe = document.createElement("iframe");
  // Every attribute before the frame is inserted: the sandbox applies from its first document.
  iframe.setAttribute("sandbox", mounted.sandbox);
  iframe.setAttribute("referrerpolicy", mounted.referrerPolicy);
  iframe.setAttribute("allow", mounted.allow);
  iframe.setAttribute("title", mounted.extensionId);
  iframe.dataset.widgetId = mounted.widgetId;
  handedOver.add(mounted.srcdoc);
  iframe.srcdoc = /** @type {string} */ (/** @type {unknown} */ (framePolicy().createHTML(mounted.srcdoc)));
  container.append(iframe);
  const link = connectFrame({
    iframe, mounted, forward,
    onUnload: (reason) => { iframe.remove(); onUnload(reason); },
  });
  iframe.addEventListener("load", () => onLoad(), { once: true });
  return {
    iframe,
    bridge: link.bridge,
    deliver: link.deliver,
    unload() { link.close(); iframe.remove(); },
  };
}
