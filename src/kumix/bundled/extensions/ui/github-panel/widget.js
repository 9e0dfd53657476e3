// A minimal Widget API client for a Kumix UI frame (the same copy ships in each bundled UI
// extension: an extension directory is self-contained). It speaks the matrix-widget-api
// wire format: requests {api: "fromWidget", widgetId, requestId, action, data} to the
// parent, answered with the same object plus `response`; the host's toWidget requests
// (capabilities, notify_capabilities, send_event) are answered the same way.
"use strict";
(() => {
  const boot = window.__KUMIX_UI_BOOTSTRAP__;
  const parentWindow = window.parent;
  const pending = new Map();
  const listeners = new Map();
  let counter = 0;
  let wanted = [];
  let approved = [];
  let readyResolve;
  const ready = new Promise((resolve) => { readyResolve = resolve; });

  const post = (message) => parentWindow.postMessage(message, "*");
  const answer = (message, response) => post({ ...message, response });

  // The page's theme (light, dark, or system: the frame's own prefers-color-scheme): the
  // frame's canvas, text and form controls follow it through `color-scheme`, set through the
  // CSSOM (the frame's CSP allows no inline style). A toWidget theme_change updates it.
  const schemeOf = (name) => (name === "dark" || name === "light" ? name : "light dark");
  const applyScheme = (name) => { document.documentElement.style.colorScheme = schemeOf(name); };
  applyScheme(boot.theme && boot.theme.name);

  window.addEventListener("message", (event) => {
    // Only the host page speaks to this frame; anything else is not the bridge.
    if (event.source !== parentWindow) return;
    const message = event.data;
    if (!message || typeof message !== "object" || message.widgetId !== boot.widgetId) return;
    if (message.api === "fromWidget" && message.response) {
      const waiter = pending.get(message.requestId);
      if (!waiter) return;
      pending.delete(message.requestId);
      if (message.response.error) {
        const error = new Error(message.response.error.message);
        error.code = message.response.error["io.kumix.code"];
        waiter.reject(error);
      } else {
        waiter.resolve(message.response);
      }
      return;
    }
    if (message.api !== "toWidget" || message.response) return;
    if (message.action === "capabilities") {
      answer(message, { capabilities: wanted });
    } else if (message.action === "notify_capabilities") {
      approved = (message.data && message.data.approved) || [];
      answer(message, {});
      readyResolve(approved);
    } else {
      answer(message, {});
      if (message.action === "theme_change" && message.data) applyScheme(message.data.name);
      for (const listener of listeners.get(message.action) || []) listener(message.data);
    }
  });

  const request = (action, data = {}) => new Promise((resolve, reject) => {
    counter += 1;
    const requestId = `req-${counter}`;
    pending.set(requestId, { resolve, reject });
    post({ api: "fromWidget", widgetId: boot.widgetId, requestId, action, data });
  });

  const api = Object.freeze({
    boot,
    /** Whether the frame shows dark now (the page's choice, or the system's under "system"). */
    dark: () => schemeOf(boot.theme && boot.theme.name) === "dark"
      || (schemeOf(boot.theme && boot.theme.name) !== "light" && matchMedia("(prefers-color-scheme: dark)").matches),
    /** Ask for these capabilities; resolves with the approved list once negotiated. */
    start(capabilities) {
      wanted = capabilities.slice();
      request("content_loaded").catch(() => {});
      return ready;
    },
    request,
    on(action, listener) {
      listeners.set(action, [...(listeners.get(action) || []), listener]);
    },
    approved: () => approved.slice(),
    /** Build an element with text only: a frame has no HTML string sinks (Trusted Types). */
    el(tag, attributes = {}, ...children) {
      const node = document.createElement(tag);
      for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
      for (const child of children) node.append(child);
      return node;
    },
  });
  Object.defineProperty(window, "kumixWidget", { value: api, writable: false, configurable: false });
})();
