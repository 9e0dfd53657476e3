// Mounting one UI frame in the host page, from the server's mount answer
// (kumix.app.ui_frames.MountedFrame.to_json()).
//
// The srcdoc goes through the page's one Trusted Types policy (`frameDocument` in
// lib/trusted-html.js), which lets exactly the document the server handed over pass, once.

import { frameDocument } from "../lib/trusted-html.js";
import { connectFrame } from "./host-frame.js";

/** @typedef {{ widgetId: string, extensionId: string, roomId: string, srcdoc: string, sandbox: string,
 *              referrerPolicy: string, allow: string,
 *              limits: import("./frame-bridge.js").Limits }} MountAnswer */

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
  iframe.srcdoc = frameDocument(mounted.srcdoc);
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
