// The server's event feed (WS /api/events): resumes from the last cursor after a drop, so
// each event arrives once; reconnects with a growing delay.

/** @typedef {{type: string, cursor?: number, [key: string]: unknown}} Frame */

export class EventFeed {
  /** @param {(frame: Frame) => void} onFrame @param {(up: boolean) => void} onState */
  constructor(onFrame, onState) {
    this.onFrame = onFrame;
    this.onState = onState;
    /** @type {number | null} */
    this.cursor = null;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.delay = 500;
    this.stopped = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    /** The id the server gave this connection (its hello frame): UI frames are mounted on it. */
    this.connection = /** @type {string | null} */ (null);
  }

  /**
   * A frame for the server (UI frames' bridge traffic); false when the socket is not open.
   * @param {Record<string, unknown>} frame
   */
  send(frame) {
    if (!this.socket || this.socket.readyState !== 1) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  start() {
    if (this.socket && !this.stopped && this.socket.readyState <= 1) return;
    this.stopped = false;
    const url = new URL("/api/events", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (this.cursor !== null) url.searchParams.set("cursor", String(this.cursor));
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onmessage = (message) => {
      /** @type {Frame} */
      let frame;
      try {
        frame = JSON.parse(String(message.data));
      } catch {
        return;
      }
      // Resume from the last event seen (a heartbeat's cursor too: nothing is missing up to
      // it). Not from "hello": its cursor is where the catch-up that follows ends, and a drop
      // during the catch-up must replay the rest.
      if (typeof frame.cursor === "number" && (frame.type === "event" || frame.type === "heartbeat")) {
        this.cursor = Math.max(this.cursor ?? 0, frame.cursor);
      }
      if (frame.type === "hello" && typeof frame.connection === "string") this.connection = frame.connection;
      if (frame.type === "hello") {
        this.delay = 500;
        this.onState(true);
      }
      this.onFrame(frame);
    };
    socket.onclose = () => {
      this.connection = null;
      this.onState(false);
      if (this.stopped) return;
      this.timer = setTimeout(() => this.start(), this.delay);
      this.delay = Math.min(this.delay * 2, 15_000);
    };
  }

  stop() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close();
  }
}
