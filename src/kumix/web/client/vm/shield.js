// The shield of a decrypted message: how far Kumix trusts the device it came from, as the
// server judged it (`sender_trust` of each event; docs/encryption.md, "What the shields
// mean"). Pure: the view draws it and says why in words.

/**
 * @typedef {"verified" | "unverified_identity" | "not_cross_signed" | "unknown_device" | "identity_changed" | "unauthenticated"} SenderTrust
 * @typedef {Exclude<SenderTrust, "verified">} Marked
 * @typedef {{level: "warning" | "danger", trust: Marked, withheld: boolean}} Shield
 */

/** @type {Record<string, "warning" | "danger">} */
const LEVELS = {
  // Cross-signed by its owner, but nothing ties it to a person you checked, or its key's
  // claim of the sender cannot be checked: grey, as Element draws these.
  unverified_identity: "warning",
  unauthenticated: "warning",
  // An insecure or unknown device, or a verified user whose identity changed: red.
  not_cross_signed: "danger",
  unknown_device: "danger",
  identity_changed: "danger",
};

/**
 * The shield to draw on a message, or null: a verified device (like the text output, which
 * marks only what is not verified), a message that was not encrypted, and an event stored
 * before shields were judged draw none. An unknown value is drawn as the worst, never as none.
 * @param {{kind: string, encrypted: boolean, sender_trust?: string | null}} ev
 * @returns {Shield | null}
 */
export function shieldOf(ev) {
  const trust = ev.sender_trust;
  if (!ev.encrypted || !trust || trust === "verified") return null;
  const level = LEVELS[trust] ?? "danger";
  return { level, trust: /** @type {Marked} */ (LEVELS[trust] ? trust : "unknown_device"), withheld: ev.kind === "undecryptable" };
}
