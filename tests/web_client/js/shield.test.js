import { test } from "node:test";
import assert from "node:assert/strict";
import { shieldOf } from "../../../src/kumix/web/client/vm/shield.js";

const ev = (/** @type {Record<string, unknown>} */ e) => ({ kind: "text", encrypted: true, ...e });

test("only what is not verified gets a shield, and its level says how bad", () => {
  assert.equal(shieldOf(ev({ sender_trust: "verified" })), null);
  assert.equal(shieldOf(ev({})), null, "stored before shields were judged");
  assert.equal(shieldOf(ev({ sender_trust: "not_cross_signed", encrypted: false })), null, "not encrypted: no claim to judge");
  assert.deepEqual(shieldOf(ev({ sender_trust: "unverified_identity" })), { level: "warning", trust: "unverified_identity", withheld: false });
  assert.deepEqual(shieldOf(ev({ sender_trust: "unauthenticated" })), { level: "warning", trust: "unauthenticated", withheld: false });
  for (const trust of ["not_cross_signed", "unknown_device", "identity_changed"]) {
    assert.deepEqual(shieldOf(ev({ sender_trust: trust })), { level: "danger", trust, withheld: false });
  }
});

test("a withheld message says so, and a value this client does not know is drawn as the worst", () => {
  assert.deepEqual(shieldOf(ev({ kind: "undecryptable", sender_trust: "not_cross_signed" })),
    { level: "danger", trust: "not_cross_signed", withheld: true });
  assert.deepEqual(shieldOf(ev({ sender_trust: "something_new" })), { level: "danger", trust: "unknown_device", withheld: false });
});
