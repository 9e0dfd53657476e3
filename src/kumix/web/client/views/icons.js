// Icons as SVG elements (no emoji: a machine without an emoji font shows boxes). Paths are
// simple strokes on a 16-unit grid; colour follows the text.
import { html } from "../lib/html.js";

/** @type {Record<string, string>} */
const PATHS = {
  lock: "M4.5 7V5a3.5 3.5 0 0 1 7 0v2M3.5 7h9v6.5h-9z",
  shield: "M8 1.5 13 3.5v4c0 3-2.2 5.4-5 7-2.8-1.6-5-4-5-7v-4zM8 5v3.5M8 10.5v.5",
  attach: "M10.5 4.5 5.8 9.2a1.5 1.5 0 0 0 2.1 2.1l5-5a3 3 0 0 0-4.2-4.2l-5 5a4.5 4.5 0 0 0 6.4 6.4L14 9.6",
  plus: "M8 3v10M3 8h10",
  home: "M2.5 7.5 8 3l5.5 4.5M4 6.5V13h8V6.5",
  back: "M10 3 5 8l5 5",
  file: "M4 1.5h5l3 3v10H4zM9 1.5v3h3",
};

/** @param {{name: keyof typeof PATHS | string, label?: string}} props */
export function Icon({ name, label }) {
  return html`<svg class="icon-svg" viewBox="0 0 16 16" width="16" height="16" fill="none" stroke="currentColor" stroke-width="1.4"
      stroke-linecap="round" stroke-linejoin="round" role=${label ? "img" : undefined} aria-label=${label} aria-hidden=${label ? undefined : "true"}>
    <path d=${PATHS[name] ?? ""} /></svg>`;
}
