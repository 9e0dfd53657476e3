// The extensions page: each extension's state, the policy's reason when it is denied, the
// capabilities it asks for, and live figures from the WebSocket's "extensions" frames.
import { signal, computed } from "../vendor/signals-core.js";

/**
 * An extension as GET /api/extensions lists it (app.extensions.ExtensionStatus.to_json).
 * @typedef {object} ExtensionDoc
 * @property {string} id
 * @property {"enabled" | "disabled" | "denied" | "invalid" | string} state
 * @property {string | null} [reason]  why the policy or the manifest decided so
 * @property {"bundled" | "external" | string} [origin]
 * @property {string} [name]
 * @property {string} [version]
 * @property {string} [kind]
 * @property {string[]} [capabilities]
 * @property {string[]} [granted]  external extensions only
 * @property {unknown} [figures]  the saved call figures (store.extension_stats)
 * @property {boolean} [send_always_allowed]  UI extensions: the person ticked "allow for this extension"
 */
/** @typedef {{calls: number, errors: number, timeouts: number, restarts: number, p50_ms: number | null, p99_ms: number | null}} Figures */

/** @param {unknown} v */
const count = (v) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0);

/** @param {number[]} sorted @param {number} q */
function percentile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/**
 * Figures as the page shows them, from the store's shape: counters, errors by code and the
 * latest latencies in seconds. Anything malformed counts as nothing.
 * @param {any} raw @returns {Figures}
 */
export function figures(raw) {
  const r = raw && typeof raw === "object" ? raw : {};
  const errors = r.errors && typeof r.errors === "object" ? Object.values(r.errors).reduce((n, v) => n + count(v), 0) : count(r.errors);
  const latencies = (Array.isArray(r.latencies) ? r.latencies : [])
    .filter((/** @type {unknown} */ x) => typeof x === "number" && Number.isFinite(x) && x >= 0)
    .map((/** @type {number} */ x) => x * 1000)
    .sort((/** @type {number} */ a, /** @type {number} */ b) => a - b);
  return {
    calls: count(r.calls), errors: errors + count(r.crashes), timeouts: count(r.timeouts), restarts: count(r.restarts),
    p50_ms: percentile(latencies, 0.5), p99_ms: percentile(latencies, 0.99),
  };
}

export class ExtensionsViewModel {
  constructor() {
    /** @type {import("../vendor/signals-core.js").Signal<ExtensionDoc[]>} */
    this.list = signal([]);
    /** @type {import("../vendor/signals-core.js").Signal<Record<string, Figures>>} */
    this.figures = signal({});
    this.rows = computed(() => [...this.list.value]
      .map((ext) => ({
        ext,
        name: ext.name || ext.id,
        bundled: ext.origin === "bundled",
        enabled: ext.state === "enabled",
        figures: this.figures.value[ext.id] ?? figures(ext.figures),
        capabilities: ext.capabilities ?? [],
        // Only external extensions need grants; a bundled one's capabilities are the policy's call.
        ungranted: ext.granted ? (ext.capabilities ?? []).filter((c) => !(ext.granted ?? []).includes(c)) : [],
        denied: ext.state === "denied" || ext.state === "invalid",
      }))
      .sort((a, b) => Number(b.bundled) - Number(a.bundled) || a.name.localeCompare(b.name)));
  }

  /** @param {ExtensionDoc[]} list */
  apply(list) {
    /** @type {Record<string, Figures>} */
    const next = { ...this.figures.value };
    for (const ext of list) if (ext.figures) next[ext.id] = figures(ext.figures);
    this.list.value = list;
    this.figures.value = next;
  }

  /** @param {Record<string, unknown>} frame  extension id → figures */
  applyFigures(frame) {
    /** @type {Record<string, Figures>} */
    const next = { ...this.figures.value };
    for (const [id, raw] of Object.entries(frame)) next[id] = figures(raw);
    this.figures.value = next;
  }
}
