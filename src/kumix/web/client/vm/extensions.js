// The extensions page: each extension's state, the policy's reason when it is denied, the
// capabilities it asks for, and live figures from the WebSocket's "extensions" frames.
import { signal, computed } from "../vendor/signals-core.js";

/**
 * @typedef {object} ExtensionDoc
 * @property {string} id
 * @property {string} name
 * @property {string} [description]
 * @property {string} [version]
 * @property {string} kind
 * @property {boolean} bundled
 * @property {boolean} enabled
 * @property {string} state
 * @property {string | null} [reason]
 * @property {string[]} capabilities
 * @property {string[]} [granted]
 */
/** @typedef {{calls: number, errors: number, timeouts: number, restarts: number, p50_ms: number | null, p99_ms: number | null}} Figures */

/** @param {any} raw @returns {Figures} */
export function figures(raw) {
  const n = (/** @type {unknown} */ v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : 0);
  const ms = (/** @type {unknown} */ v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : null);
  const r = raw && typeof raw === "object" ? raw : {};
  return { calls: n(r.calls), errors: n(r.errors), timeouts: n(r.timeouts), restarts: n(r.restarts), p50_ms: ms(r.p50_ms ?? r.p50), p99_ms: ms(r.p99_ms ?? r.p99) };
}

export class ExtensionsViewModel {
  constructor() {
    /** @type {import("../vendor/signals-core.js").Signal<ExtensionDoc[]>} */
    this.list = signal([]);
    /** @type {import("../vendor/signals-core.js").Signal<Record<string, Figures>>} */
    this.figures = signal({});
    this.rows = computed(() => [...this.list.value]
      .sort((a, b) => Number(b.bundled) - Number(a.bundled) || a.name.localeCompare(b.name))
      .map((ext) => ({
        ext,
        figures: this.figures.value[ext.id] ?? figures(null),
        ungranted: ext.capabilities.filter((c) => !(ext.granted ?? ext.capabilities).includes(c)),
        denied: ext.state === "denied" || !!ext.reason,
      })));
  }

  /** @param {ExtensionDoc[]} list */
  apply(list) {
    this.list.value = list;
  }

  /** @param {Record<string, unknown>} frame  extension id → figures */
  applyFigures(frame) {
    /** @type {Record<string, Figures>} */
    const next = { ...this.figures.value };
    for (const [id, raw] of Object.entries(frame)) next[id] = figures(raw);
    this.figures.value = next;
  }
}
