// An independent Matrix client for Kumix's interop tests: matrix-js-sdk with its Rust
// crypto (the stack Element uses), in Node. It logs in with a password and then answers
// one JSON request per stdin line with one JSON line on stdout prefixed "@@" (the SDK's
// own logging goes to stderr, so stdout carries nothing else).
//
// usage: node peer.mjs HOMESERVER USER_ID PASSWORD

import readline from "node:readline";

for (const name of ["log", "info", "warn", "debug", "trace"]) console[name] = console.error;

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
const { logger } = await import("matrix-js-sdk/lib/logger.js");
logger.setLevel("warn");

const [homeserver, userId, password] = process.argv.slice(2);
const say = (doc) => process.stdout.write("@@" + JSON.stringify(doc) + "\n");

const login = await sdk.createClient({ baseUrl: homeserver }).login("m.login.password", {
  identifier: { type: "m.id.user", user: userId },
  password,
  initial_device_display_name: "js-peer",
});

// Secret storage keys this peer knows (by key id), for the getSecretStorageKey callback.
const ssssKeys = new Map();
const client = sdk.createClient({
  baseUrl: homeserver,
  userId: login.user_id,
  accessToken: login.access_token,
  deviceId: login.device_id,
  cryptoCallbacks: {
    getSecretStorageKey: async ({ keys }) => {
      for (const id of Object.keys(keys)) if (ssssKeys.has(id)) return [id, ssssKeys.get(id)];
      return null;
    },
    cacheSecretStorageKey: (id, _info, key) => ssssKeys.set(id, key),
  },
});
await client.initRustCrypto({ useIndexedDB: false });
const crypto = client.getCrypto();

const verifications = []; // incoming verification requests, newest last
client.on("crypto.verificationRequestReceived", (req) => verifications.push(req));

await new Promise((resolve) => {
  client.once("sync", (state) => resolve(state));
  client.startClient({ initialSyncLimit: 50 });
});

const uia = async (makeRequest) => {
  await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const got = await fn();
    if (got !== undefined && got !== null && got !== false) return got;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(150);
  }
}

function eventsOf(roomId) {
  const room = client.getRoom(roomId);
  return room ? room.getLiveTimeline().getEvents() : [];
}

function describe(ev) {
  return {
    event_id: ev.getId(),
    sender: ev.getSender(),
    type: ev.getType(),
    body: ev.getContent()?.body ?? null,
    encrypted: ev.isEncrypted(),
    decryption_failure: ev.isDecryptionFailure() ? String(ev.decryptionFailureReason) : null,
  };
}

let current = null; // the SAS verification in progress: { verifier, sas, done }

function followSas(verifier) {
  current = { verifier, sas: null, done: null };
  const mine = current;
  verifier.on("show_sas", (cb) => { mine.sas = cb; });
  mine.done = verifier.verify().then(() => "done", (e) => `failed: ${e}`);
}

const ops = {
  async bootstrap_cross_signing() {
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia });
    return { ready: await crypto.isCrossSigningReady() };
  },
  async reset_cross_signing() {
    await crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: uia });
    return { ready: await crypto.isCrossSigningReady() };
  },
  async setup_recovery({ passphrase }) {
    // Element's "set up recovery": a new secret storage key holding the cross-signing keys,
    // and a new key backup whose key goes into secret storage too.
    const key = await crypto.createRecoveryKeyFromPassphrase(passphrase);
    await crypto.bootstrapSecretStorage({
      createSecretStorageKey: async () => key,
      setupNewSecretStorage: true,
      setupNewKeyBackup: true,
    });
    return { recovery_key: key.encodedPrivateKey, ready: await crypto.isSecretStorageReady() };
  },
  async create_room({ name, invite }) {
    const r = await client.createRoom({
      name, invite: invite ?? [],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    // Not before the encryption state has arrived: until then the SDK would send in clear.
    await until("the new room, encrypted", () => client.getRoom(r.room_id)?.hasEncryptionStateEvent());
    return { room_id: r.room_id };
  },
  async backup_info() {
    const info = await crypto.checkKeyBackupAndEnable();
    return { version: info?.backupInfo?.version ?? null, trusted: info?.trustInfo?.trusted ?? null,
             active: await crypto.getActiveSessionBackupVersion() };
  },
  async request_verification({ user, device }) {
    // Asks, and once the other side is ready starts SAS itself (in the background: the
    // test drives the other side meanwhile).
    const req = await crypto.requestDeviceVerification(user, device);
    (async () => {
      await until("ready", () => req.phase === 3 /* Ready */ || req.phase >= 5, 120000);
      if (req.phase === 3) followSas(await req.startVerification("m.sas.v1"));
    })().catch((e) => console.error("verification failed", e));
    return { transaction_id: req.transactionId };
  },
  async request_verification_dm({ user, room }) {
    const req = await crypto.requestVerificationDM(user, room);
    (async () => {
      await until("ready", () => req.phase === 3 /* Ready */ || req.phase >= 5, 120000);
      if (req.phase === 3) followSas(await req.startVerification("m.sas.v1"));
    })().catch((e) => console.error("verification failed", e));
    return { transaction_id: req.transactionId };
  },
  async accept_verification() {
    const req = await until("a verification request", () => verifications.shift());
    await req.accept();
    const verifier = await until("the other side's start", () => req.verifier);
    followSas(verifier);
    return { transaction_id: req.transactionId };
  },
  async sas_show() {
    const cb = await until("the SAS", () => current?.sas);
    return { emoji: cb.sas.emoji.map(([e, name]) => name), decimal: cb.sas.decimal };
  },
  async sas_confirm() {
    await current.sas.confirm();
    return { result: await current.done };
  },
  async sas_mismatch() {
    current.sas.mismatch();
    return { result: await current.done };
  },
  async isolation({ mode }) {
    crypto.setDeviceIsolationMode(
      mode === "signed" ? new cryptoApi.OnlySignedDevicesIsolationMode() : new cryptoApi.AllDevicesIsolationMode(false),
    );
    return {};
  },
  async join({ room }) {
    await until("the invite", () => client.getRoom(room));
    await client.joinRoom(room);
    return {};
  },
  async send({ room, body }) {
    await until("the room", () => client.getRoom(room)?.getMyMembership() === "join");
    const r = await client.sendMessage(room, { msgtype: "m.text", body });
    return { event_id: r.event_id };
  },
  async wait_event({ room, body, failure, reason }) {
    // Waits for a decrypted event with `body`, or (with `failure`) for any undecryptable event
    // (with `reason`: one whose failure reason says so). A failure's reason can change: an
    // event that arrives before its room key fails as "unknown session" first, and is judged
    // again once the key is in, so a single look at the reason is a race.
    const ev = await until(`event ${body ?? "failure"} ${reason ?? ""}`, async () => {
      for (const e of eventsOf(room)) {
        if (e.isBeingDecrypted?.()) continue;
        if (failure && e.isDecryptionFailure() && (!reason || String(e.decryptionFailureReason).includes(reason))) {
          return e;
        }
        if (body !== undefined && e.getContent()?.body === body) return e;
      }
      return null;
    });
    return describe(ev);
  },
  async device_status({ user, device, wait_for }) {
    // With wait_for (a field name): poll until it is true or 30 s pass, then answer with
    // what is seen. The peer learns of a new signature through its sync's device-list
    // changes, some time after the upload, so a single look is a race.
    const end = Date.now() + (wait_for ? 30000 : 0);
    for (;;) {
      await crypto.getUserDeviceInfo([user], true);
      const st = await crypto.getDeviceVerificationStatus(user, device);
      const status = st
        ? { known: true, cross_signing_verified: st.crossSigningVerified, signed_by_owner: st.signedByOwner,
            verified: st.isVerified() }
        : { known: false };
      if (!wait_for || status[wait_for] === true || Date.now() >= end) return status;
      await sleep(150);
    }
  },
  async wait_device({ user, device }) {
    await crypto.getUserDeviceInfo([user], true);
    // Then from the store alone, and with its verification status readable: that is
    // where the Rust crypto looks up the sender of a verification request.
    await until(`${user}'s device ${device}`, async () => {
      const map = await crypto.getUserDeviceInfo([user], false);
      return map.get(user)?.has(device) && (await crypto.getDeviceVerificationStatus(user, device)) !== null;
    });
    return { known: true };
  },
  async user_status({ user, settle_ms }) {
    // With settle_ms: give the SDK that long to upload and re-read its own signature of
    // the user (it marks the identity verified once its user-signing signature is in).
    const end = Date.now() + (settle_ms ?? 0);
    let st;
    for (;;) {
      await crypto.getUserDeviceInfo([user], true);
      st = await crypto.getUserVerificationStatus(user);
      if (st.isCrossSigningVerified() || Date.now() >= end) break;
      await sleep(200);
    }
    return { cross_signing_verified: st.isCrossSigningVerified(), verified: st.isVerified() };
  },
  async stop() {
    client.stopClient();
    setTimeout(() => process.exit(0), 10);
    return {};
  },
};

say({ ready: true, user_id: login.user_id, device_id: login.device_id });

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  let req;
  try {
    req = JSON.parse(line);
    const fn = ops[req.op];
    if (!fn) throw new Error(`unknown op ${req.op}`);
    say(await fn(req));
  } catch (err) {
    say({ error: String(err?.stack ?? err) });
  }
}
process.exit(0);
