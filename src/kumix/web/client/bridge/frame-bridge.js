// The host page's gate for one UI frame: a sans-I/O state machine (events in, outcomes out).
//
// Between opaque origins the origin string says nothing (every srcdoc frame is "null"), so a
// frame's identity is its window: a message counts only if `event.source` is this frame's
// contentWindow, `event.origin` is "null" and its `widgetId` is this frame's token (checked
// in that order). matrix-widget-api's ClientWidgetApi never checks `event.source`; this does.
// Everything else is dropped and counted. Accepted messages go to the server, which decides
// again; the page is only a relay and never performs an action itself.

/** @typedef {{ maxMessageBytes: number, maxMessagesPerSecond: number }} Limits */
/**
 * @typedef {{ kind: "drop", reason: string }
 *   | { kind: "post", message: Record<string, unknown> }
 *   | { kind: "forward", raw: string }
 *   | { kind: "unload", reason: string }} Outcome
 *   `post`: send to the frame's window (targetOrigin "*": a srcdoc frame has no origin to
 *   name, and it cannot navigate away, so the reply reaches only it). `forward`: send the
 *   JSON text to the server over the session's WebSocket. `unload`: remove the frame.
 */

/** Seconds in a row over the message rate before the frame is unloaded (as the server). */
export const UNLOAD_AFTER_WINDOWS = 3;
/** Oversized messages of one frame before it is unloaded: each one costs the host page's main
 * thread its deserialization (measured in Chromium 156: 100-600 ms for 10 MB), so a frame that
 * keeps sending them is stopped instead of being answered forever. */
export const UNLOAD_AFTER_OVERSIZED = 3;
const MAX_ID_CHARS = 128;

/**
 * @param {unknown} value
 * @returns {value is Record<string, unknown>}
 */
function isRecord(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A lower bound of `JSON.stringify(value).length`, computed only until it passes `limit`, so
 * an oversized message is refused without serializing it (JSON.stringify of 10 MB is another
 * 80-140 ms of the host's main thread, measured). Every string counts its length and quotes,
 * every key its length, quotes and colon, every other value one character: JSON is never
 * shorter. An object or array met again (a shared or cyclic reference, which structured
 * clone allows) is counted once, which keeps it a lower bound and ends the walk.
 * @param {unknown} value
 * @param {number} limit
 * @returns {number}
 */
export function jsonLengthAtLeast(value, limit) {
  let total = 0;
  /** @type {unknown[]} */
  const stack = [value];
  const seen = new Set();
  while (stack.length > 0 && total <= limit) {
    const current = stack.pop();
    if (typeof current === "object" && current !== null) {
      if (seen.has(current)) continue;
      seen.add(current);
    }
    if (typeof current === "string") {
      total += current.length + 2;
    } else if (Array.isArray(current)) {
      total += current.length + 1;
      if (total > limit) break;
      for (const item of current) stack.push(item);
    } else if (isRecord(current)) {
      const keys = Object.keys(current);
      total += keys.length + 1;
      if (total > limit) break;
      for (const key of keys) {
        total += key.length + 3;
        stack.push(current[key]);
      }
    } else {
      total += 1;
    }
  }
  return total;
}

/**
 * A Widget API error response to a request, or null when the message is not a request.
 * @param {Record<string, unknown>} message
 * @param {string} code
 * @param {string} text
 * @returns {Outcome[]}
 */
function errorReply(message, code, text) {
  if (message.api !== "fromWidget" || typeof message.requestId !== "string" || "response" in message) return [];
  // Echo only a well-formed envelope: a 10 MB requestId or action is not sent back.
  if (message.requestId.length > MAX_ID_CHARS) return [];
  const action = typeof message.action === "string" && message.action.length <= MAX_ID_CHARS ? message.action : "";
  return [{
    kind: "post",
    message: {
      api: "fromWidget", widgetId: message.widgetId, requestId: message.requestId, action,
      data: {}, response: { error: { message: text, "io.kumix.code": code } },
    },
  }];
}

export class FrameBridge {
  /**
   * @param {{ widgetId: string, frameWindow: unknown, limits: Limits }} options
   *   `frameWindow`: the iframe's contentWindow, compared by identity only.
   */
  constructor({ widgetId, frameWindow, limits }) {
    if (typeof widgetId !== "string" || widgetId.length < 22) throw new TypeError("widgetId must be a 128-bit token");
    if (frameWindow === null || frameWindow === undefined) throw new TypeError("frameWindow is required");
    /** @readonly */ this.widgetId = widgetId;
    /** @readonly */ this.frameWindow = frameWindow;
    /** @readonly */ this.limits = limits;
    /** @type {Record<string, number>} */
    this.dropped = {};
    this.unloaded = false;
    /** @private */ this.window = -1;
    /** @private */ this.count = 0;
    /** @private */ this.overWindows = 0;
    /** @private */ this.oversized = 0;
    /** @private */ this.encoder = new TextEncoder();
  }

  /**
   * @param {string} reason
   * @returns {Outcome[]}
   */
  drop(reason) {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    return [{ kind: "drop", reason }];
  }

  /**
   * Count one message in its one-second window; true when it is over the rate.
   * @param {number} nowMs
   * @returns {boolean}
   */
  overRate(nowMs) {
    const window = Math.floor(nowMs / 1000);
    if (window !== this.window) {
      const over = this.count > this.limits.maxMessagesPerSecond;
      this.overWindows = over && window === this.window + 1 ? this.overWindows + 1 : 0;
      this.window = window;
      this.count = 0;
    }
    this.count += 1;
    return this.count > this.limits.maxMessagesPerSecond;
  }

  /**
   * One `message` event of the host window.
   * @param {{ source: unknown, origin: unknown, data: unknown }} event
   * @param {number} nowMs a monotonic clock (performance.now()), passed in so tests drive it
   * @returns {Outcome[]}
   */
  receive(event, nowMs) {
    if (this.unloaded) return this.drop("unloaded");
    if (event.source !== this.frameWindow) return this.drop("wrong_window");
    if (event.origin !== "null") return this.drop("wrong_origin");
    const data = event.data;
    if (!isRecord(data)) return this.drop("not_object");
    if (data.widgetId !== this.widgetId) return this.drop("wrong_token");
    if (this.overRate(nowMs)) {
      const limit = this.limits.maxMessagesPerSecond;
      if (this.count > 2 * limit || this.overWindows + 1 >= UNLOAD_AFTER_WINDOWS) {
        this.unloaded = true;
        this.drop("rate");
        return [{ kind: "unload", reason: `more than ${limit} messages a second` }];
      }
      if (this.count > limit + 1) return this.drop("rate");  // answer once: no amplification
      this.drop("rate");
      return errorReply(data, "unavailable", `over ${limit} messages a second; a frame that keeps this up is unloaded`);
    }
    const max = this.limits.maxMessageBytes;
    /** @type {string | null} */
    let raw = null;
    if (jsonLengthAtLeast(data, max) <= max) {
      try {
        raw = JSON.stringify(data);  // throws on cycles and BigInt, which structured clone allows
      } catch {
        return this.drop("not_serializable");
      }
    }
    // UTF-8 never has fewer bytes than UTF-16 has units: a long string is over without
    // encoding it, and only a string within the bound is encoded for the exact count.
    if (raw === null || raw.length > max || this.encoder.encode(raw).length > max) {
      this.drop("too_large");
      this.oversized += 1;
      if (this.oversized >= UNLOAD_AFTER_OVERSIZED) {
        this.unloaded = true;
        return [{ kind: "unload", reason: `${this.oversized} messages larger than ${max} bytes` }];
      }
      return errorReply(data, "input_too_large", `message larger than ${max} bytes`);
    }
    const { requestId, action, api } = data;
    if (typeof requestId !== "string" || requestId.length === 0 || requestId.length > MAX_ID_CHARS
        || typeof action !== "string" || action.length === 0 || action.length > MAX_ID_CHARS) {
      return this.drop("bad_envelope");
    }
    const isRequest = api === "fromWidget" && !("response" in data);
    const isAnswer = api === "toWidget" && isRecord(data.response);
    if (!isRequest && !isAnswer) return this.drop("bad_envelope");
    return [{ kind: "forward", raw }];
  }

  /**
   * A message the server sent for this frame: posted only if it carries this frame's token.
   * @param {unknown} message
   * @returns {Outcome[]}
   */
  fromServer(message) {
    if (this.unloaded) return this.drop("unloaded");
    if (!isRecord(message) || message.widgetId !== this.widgetId) return this.drop("server_wrong_token");
    return [{ kind: "post", message }];
  }
}
