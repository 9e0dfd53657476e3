// A modal dialog: focus moves in, Tab stays inside, Esc closes, focus returns on close.
import { html } from "../lib/html.js";
import { useEffect, useRef } from "../vendor/preact-hooks.js";

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select, textarea, [tabindex]:not([tabindex='-1'])";

/** @param {{label: string, onClose: () => void, children: any}} props */
export function Dialog({ label, onClose, children }) {
  const ref = useRef(/** @type {HTMLDivElement | null} */ (null));
  useEffect(() => {
    const before = /** @type {HTMLElement | null} */ (document.activeElement);
    ref.current?.querySelector(/** @type {"input"} */ (FOCUSABLE))?.focus();
    return () => before?.focus();
  }, []);
  /** @param {KeyboardEvent} e */
  const onKey = (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      onClose();
    } else if (e.key === "Tab" && ref.current) {
      const items = /** @type {HTMLElement[]} */ ([...ref.current.querySelectorAll(FOCUSABLE)]);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
      else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
    }
  };
  return html`<div class="backdrop" onClick=${(/** @type {MouseEvent} */ e) => e.target === e.currentTarget && onClose()}>
    <div class="dialog" role="dialog" aria-modal="true" aria-label=${label} ref=${ref} onKeyDown=${onKey}>${children}</div>
  </div>`;
}
