"""The encryption-trust API (cross-signing status, recovery, key backup, devices, SAS
verification) through a real uvicorn against the real test Synapse and, for verification,
the independent matrix-js-sdk peer (tests/js_peer): a second device is reported not
verified until the recovery key is used; a wrong key is refused with its code; SAS between
the API and the peer, each side asking once, ends with both sides showing the other
verified; and the recovery key, once answered, is in no later answer, log line or file."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kumix.matrix.secret_storage import encode_recovery_key
from tests.conftest import run_kumix
from tests.matrix.js_peer import JsPeer
from tests.synapse_harness import SynapseHarness, TestUser
from tests.web.web_harness import WebServer

pytestmark = pytest.mark.synapse

PASSPHRASE = "encryption web tests' vault passphrase"


class Records(logging.Handler):
    """Every log record of the process, formatted, while the module runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + repr(record.args))


@pytest.fixture(scope="module")
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def vault_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("encvault") / "passphrase"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, PASSPHRASE.encode() + b"\n")
    os.close(fd)
    return {"KUMIX_VAULT_PASSPHRASE_FILE": str(path)}


@pytest.fixture(scope="module")
def alice_user(synapse: SynapseHarness) -> TestUser:
    return synapse.user("encalice")


def logged_in_dir(root: Path, synapse: SynapseHarness, user: TestUser, env: dict[str, str]) -> Path:
    """A data directory logged in by `kumix login` in a process of its own: nio's crypto store
    binds its (global) peewee models per call, so a second nio client opened in this process
    while a test server's thread runs another one races it ("Query must be bound")."""
    data_dir = root / "data"
    r = run_kumix("login", "--homeserver", synapse.url, "--user", user.localpart, "--password-stdin",
                  env={**env, "KUMIX_DATA_DIR": str(data_dir)}, input=user.password + "\n")
    assert r.returncode == 0, r.stderr
    return data_dir


@pytest.fixture(scope="module")
def first_dir(synapse: SynapseHarness, alice_user: TestUser, vault_env: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    return logged_in_dir(tmp_path_factory.mktemp("first"), synapse, alice_user, vault_env)


@pytest.fixture(scope="module")
def first(first_dir: Path, vault_env: dict[str, str], records: Records) -> Iterator[WebServer]:
    s = WebServer(first_dir, vault_env).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser(first: WebServer) -> Iterator[httpx.Client]:
    with first.client() as c:
        yield c


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def wait_for(get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Poll a resource as the page does, until `done` (a finished flow that is not `done`
    fails at once, with its error)."""
    for _ in range(1200):
        doc = get()
        if done(doc):
            return doc
        assert doc.get("state") not in ("cancelled", "failed"), doc
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


# -- status and recovery --------------------------------------------------------------------

def test_second_device_is_not_verified_until_the_recovery_key(
    synapse: SynapseHarness, alice_user: TestUser, vault_env: dict[str, str], first: WebServer, browser: httpx.Client,
    first_dir: Path, records: Records, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    status = ok(browser.get("/api/encryption"))
    assert status["cross_signing"]["device_verified"] is True  # the password login bootstrapped it
    assert status["recovery"]["set_up"] is False
    assert status["exclude_insecure_devices"] is True  # the default of a new data directory

    # The setting round-trips.
    assert ok(browser.put("/api/encryption/settings", json={"exclude_insecure_devices": False})) == {
        "exclude_insecure_devices": False}
    assert ok(browser.get("/api/encryption"))["exclude_insecure_devices"] is False
    ok(browser.put("/api/encryption/settings", json={"exclude_insecure_devices": True}))
    refused = browser.put("/api/encryption/settings", json={"exclude_insecure_devices": "yes"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "bad_request"

    mark = len(first.capture.chunks)
    setup = ok(browser.post("/api/encryption/recovery"))
    recovery_key = setup["recovery_key"]
    assert setup["recovery"]["set_up"] is True
    after_setup = len(first.capture.chunks)
    assert recovery_key.encode() in b"\n".join(first.capture.chunks[mark:after_setup])
    backup = ok(browser.post("/api/encryption/backup"))
    assert backup["backup"]["trusted"] is True

    second_dir = logged_in_dir(tmp_path_factory.mktemp("second"), synapse, alice_user, vault_env)
    second = WebServer(second_dir, vault_env).start()
    try:
        with second.client() as c2:
            before = ok(c2.get("/api/encryption"))["cross_signing"]
            assert before["has_identity"] is True
            assert before["device_verified"] is False  # the API says so until it is verified
            mine = ok(c2.get("/api/devices"))
            assert {d["device_id"]: d["trust"] for d in mine["devices"]}[before["device_id"]] != "verified"

            # A well-formed key that is not this account's: refused with its code, nothing trusted.
            wrong = c2.post("/api/encryption/recovery/use", json={"recovery_key": encode_recovery_key(os.urandom(32))})
            assert wrong.status_code == 403, wrong.text
            assert wrong.json()["error"]["code"] == "wrong_recovery_key"
            assert ok(c2.get("/api/encryption"))["cross_signing"]["device_verified"] is False
            both = c2.post("/api/encryption/recovery/use", json={"recovery_key": "x", "passphrase": "y"})
            assert both.status_code == 400

            used = ok(c2.post("/api/encryption/recovery/use", json={"recovery_key": recovery_key}))
            assert used["cross_signing"]["device_verified"] is True
            status2 = ok(c2.get("/api/encryption"))
            assert status2["cross_signing"]["device_verified"] is True
            assert status2["backup"]["have_key"] is True
            restored = ok(c2.post("/api/encryption/backup/restore"))
            assert restored["refused"] == []
            # The first device now lists the second as verified.
            listing = ok(browser.get("/api/devices", params={"user": alice_user.user_id}))
            assert {d["device_id"]: d["trust"] for d in listing["devices"]}[before["device_id"]] == "verified"
            for doc in (ok(c2.get("/api/encryption")), ok(browser.get("/api/encryption"))):
                assert recovery_key not in str(doc)
    finally:
        second.stop()

    # The recovery key was in its one answer and nowhere since: no later answer of either
    # server, no log record, no file of either data directory.
    needles = [recovery_key.encode(), recovery_key.replace(" ", "").encode()]
    later = b"\n".join(first.capture.chunks[after_setup:]) + second.capture.blob()
    logs = "\n".join(records.lines).encode()
    assert len(records.lines) > 10
    assert len(later) > 1000
    for needle in needles:
        assert needle not in later
        assert needle not in logs
        for data_dir in (first_dir, second_dir):
            for path in data_dir.rglob("*"):
                if path.is_file():
                    assert needle not in path.read_bytes(), path
    # The search does find what is there: the second device's request body held the key.
    assert recovery_key.encode() in b"\n".join(first.capture.chunks[mark:after_setup])


# -- SAS with the independent peer ----------------------------------------------------------

async def _peer_in_a_room(synapse: SynapseHarness, browser: httpx.Client, first: WebServer,
                          alice_user: TestUser, prefix: str) -> tuple[JsPeer, TestUser]:
    bob = synapse.user(prefix)
    peer = await JsPeer.start(synapse.url, bob)
    await peer.do("bootstrap_cross_signing")
    r = await asyncio.to_thread(browser.post, "/api/rooms",
                                json={"name": "Verify", "encrypted": True, "invite": [bob.user_id]})
    room_id = ok(r)["room_id"]
    await peer.do("join", room=room_id)
    for _ in range(600):
        devices = ok(await asyncio.to_thread(browser.get, "/api/devices", params={"user": bob.user_id}))
        if any(d["device_id"] == peer.device_id for d in devices["devices"]):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the peer's device never showed up")
    me = ok(await asyncio.to_thread(browser.get, "/api/whoami"))["account"]
    await peer.do("wait_device", user=alice_user.user_id, device=me["device_id"])
    return peer, bob


async def _compare_and_confirm(browser: httpx.Client, peer: JsPeer, flow_id: str) -> dict[str, Any]:
    keys = await asyncio.to_thread(wait_for, lambda: ok(browser.get(f"/api/verifications/{flow_id}")),
                                   lambda d: d["state"] == "keys", "the SAS")
    shown = await peer.do("sas_show")
    assert [e["name"] for e in keys["emoji"]] == shown["emoji"]
    assert all(e["emoji"] for e in keys["emoji"])
    assert keys["decimals"] == shown["decimal"]
    peer_done = asyncio.create_task(peer.do("sas_confirm"))
    ok(await asyncio.to_thread(browser.post, f"/api/verifications/{flow_id}/confirm"))
    done = await asyncio.to_thread(wait_for, lambda: ok(browser.get(f"/api/verifications/{flow_id}")),
                                   lambda d: d["state"] == "done", "the end of the verification")
    assert (await peer_done)["result"] == "done"
    return done


async def test_the_api_asks_and_the_peer_answers(synapse: SynapseHarness, first: WebServer, browser: httpx.Client,
                                                 alice_user: TestUser) -> None:
    peer, bob = await _peer_in_a_room(synapse, browser, first, alice_user, "encbobA")
    try:
        before = ok(await asyncio.to_thread(browser.get, "/api/devices", params={"user": bob.user_id}))
        assert before["identity_verified"] is False
        accepted = asyncio.create_task(peer.do("accept_verification"))
        flow = ok(await asyncio.to_thread(browser.post, "/api/verifications",
                                          json={"user": bob.user_id, "device": peer.device_id}))
        assert flow["role"] == "asker"
        assert flow["state"] == "requested"
        await accepted
        done = await _compare_and_confirm(browser, peer, flow["id"])
        assert done["verified"]
        after = ok(await asyncio.to_thread(browser.get, "/api/devices", params={"user": bob.user_id}))
        assert after["identity_verified"] is True
        assert {d["device_id"]: d["trust"] for d in after["devices"]}[peer.device_id] == "verified"
        seen = await peer.do("user_status", user=alice_user.user_id, settle_ms=20000)
        assert seen["cross_signing_verified"] is True
        # A finished flow takes no more decisions.
        late = await asyncio.to_thread(browser.post, f"/api/verifications/{flow['id']}/confirm")
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "verification_failed"
    finally:
        await peer.stop()


async def test_the_peer_asks_and_the_api_answers(synapse: SynapseHarness, first: WebServer, browser: httpx.Client,
                                                 alice_user: TestUser) -> None:
    peer, bob = await _peer_in_a_room(synapse, browser, first, alice_user, "encbobB")
    try:
        me = ok(await asyncio.to_thread(browser.get, "/api/whoami"))["account"]
        with await asyncio.to_thread(first.websocket, browser) as ws:
            assert (await asyncio.to_thread(first.recv_json, ws))["type"] == "hello"
            await peer.do("request_verification", user=alice_user.user_id, device=me["device_id"])

            def frame() -> dict[str, Any]:
                while True:
                    doc = first.recv_json(ws)
                    if doc["type"] == "verification":
                        return doc

            pushed = (await asyncio.to_thread(frame))["verification"]
        assert pushed["user_id"] == bob.user_id
        assert pushed["state"] == "incoming"

        def incoming() -> dict[str, Any]:
            flows = ok(browser.get("/api/verifications"))["verifications"]
            mine = [f for f in flows if f["user_id"] == bob.user_id and f["role"] == "answerer"]
            return mine[0] if mine else {"state": "none"}

        flow = await asyncio.to_thread(wait_for, incoming, lambda d: d["state"] == "incoming", "the request")
        assert flow["device_id"] == peer.device_id
        # Nothing to confirm before keys are exchanged.
        early = await asyncio.to_thread(browser.post, f"/api/verifications/{flow['id']}/confirm")
        assert early.status_code == 409
        ok(await asyncio.to_thread(browser.post, f"/api/verifications/{flow['id']}/accept"))
        await _compare_and_confirm(browser, peer, flow["id"])
        after = ok(await asyncio.to_thread(browser.get, "/api/devices", params={"user": bob.user_id}))
        assert after["identity_verified"] is True
        seen = await peer.do("user_status", user=alice_user.user_id, settle_ms=20000)
        assert seen["cross_signing_verified"] is True
    finally:
        await peer.stop()


def test_verification_input_is_checked(browser: httpx.Client) -> None:
    for body in ({}, {"user": "not-a-user-id"}, {"user": 5}, {"user": "@a:b", "device": "D", "room": "!r:x"}):
        r = browser.post("/api/verifications", json=body)
        assert r.status_code in (400, 404), (body, r.text)
        assert r.json()["error"]["code"] in ("bad_request", "not_found")
    assert browser.get("/api/verifications/vnope").json()["error"]["code"] == "not_found"
    assert browser.post("/api/verifications/vnope/confirm").status_code == 404
    assert browser.post("/api/verifications/vnope/explode").status_code == 404


def test_running_verifications_are_bounded_and_cancellable(synapse: SynapseHarness, browser: httpx.Client) -> None:
    """Flows nobody answers stay `requested` (tasks of the server, not of the request); at
    most MAX_FLOWS run; a further start is `state_busy`; cancelled ones free their place."""
    from kumix.app.verification_flows import MAX_FLOWS

    nobody = synapse.user("encnobody")
    started = [ok(browser.post("/api/verifications", json={"user": nobody.user_id}))["id"]
               for _ in range(MAX_FLOWS)]
    try:
        busy = browser.post("/api/verifications", json={"user": nobody.user_id})
        assert busy.status_code == 409
        assert busy.json()["error"]["code"] == "state_busy"
        assert {f["state"] for f in ok(browser.get("/api/verifications"))["verifications"]
                if f["id"] in started} == {"requested"}
    finally:
        for flow_id in started:
            ok(browser.post(f"/api/verifications/{flow_id}/cancel"))
    ended = [wait_until_cancelled(browser, flow_id) for flow_id in started]
    assert all(d["state"] == "cancelled" for d in ended)
    again = ok(browser.post("/api/verifications", json={"user": nobody.user_id}))
    ok(browser.post(f"/api/verifications/{again['id']}/cancel"))


def wait_until_cancelled(browser: httpx.Client, flow_id: str) -> dict[str, Any]:
    for _ in range(600):
        doc = ok(browser.get(f"/api/verifications/{flow_id}"))
        if doc["state"] == "cancelled":
            return doc
        time.sleep(0.05)
    raise AssertionError(f"{flow_id} was never cancelled")


def test_cross_signing_reset_asks_for_the_password(synapse: SynapseHarness, vault_env: dict[str, str],
                                                   records: Records, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The homeserver's user-interactive auth: without the password the answer says it is
    needed (401 with a reason the page can tell from a lost session), a wrong one is
    refused, the right one replaces the identity; the password is in no answer or log."""
    carol = synapse.user("enccarol")
    data_dir = logged_in_dir(tmp_path_factory.mktemp("carol"), synapse, carol, vault_env)
    server = WebServer(data_dir, vault_env).start()
    try:
        with server.client() as c:
            before = ok(c.get("/api/encryption"))["cross_signing"]
            assert before["device_verified"] is True
            again = ok(c.post("/api/encryption/cross-signing", json={}))
            assert again["done"] is True
            assert again["cross_signing"]["master_key"] == before["master_key"]  # held: nothing replaced

            missing = c.post("/api/encryption/cross-signing", json={"reset": True})
            assert missing.status_code == 401
            assert missing.json()["error"]["details"]["reason"] == "password_required"
            wrong = c.post("/api/encryption/cross-signing", json={"reset": True, "password": "not " + carol.password})
            assert wrong.status_code == 401
            assert wrong.json()["error"]["details"]["reason"] == "password_refused"
            assert ok(c.get("/api/whoami"))["logged_in"] is True  # the page's session is not what failed

            reset = ok(c.post("/api/encryption/cross-signing", json={"reset": True, "password": carol.password}))
            assert reset["done"] is True
            assert reset["cross_signing"]["master_key"] != before["master_key"]
            assert reset["cross_signing"]["device_verified"] is True
    finally:
        server.stop()
    assert carol.password.encode() not in server.capture.blob()
    assert carol.password not in "\n".join(records.lines)


async def test_in_room_verification_through_the_api(synapse: SynapseHarness, first: WebServer,
                                                    browser: httpx.Client, alice_user: TestUser) -> None:
    """`room` in the start: the request is a message in the DM, the peer accepts it there."""
    peer, bob = await _peer_in_a_room(synapse, browser, first, alice_user, "encbobC")
    try:
        dm = ok(await asyncio.to_thread(browser.post, "/api/rooms",
                                        json={"direct": True, "invite": [bob.user_id]}))["room_id"]
        await peer.do("join", room=dm)

        def known() -> dict[str, Any]:
            rooms = ok(browser.get("/api/rooms"))["rooms"]
            return {"state": "known"} if any(r["room_id"] == dm for r in rooms) else {"state": "waiting"}

        await asyncio.to_thread(wait_for, known, lambda d: d["state"] == "known", "the DM")
        accepted = asyncio.create_task(peer.do("accept_verification"))
        flow = ok(await asyncio.to_thread(browser.post, "/api/verifications", json={"user": bob.user_id, "room": dm}))
        assert flow["room_id"] == dm
        await accepted
        await _compare_and_confirm(browser, peer, flow["id"])
        after = ok(await asyncio.to_thread(browser.get, "/api/devices", params={"user": bob.user_id}))
        assert after["identity_verified"] is True
        seen = await peer.do("user_status", user=alice_user.user_id, settle_ms=20000)
        assert seen["cross_signing_verified"] is True
    finally:
        await peer.stop()


def test_an_abandoned_verification_times_out_by_itself(synapse: SynapseHarness, browser: httpx.Client,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody answers and the page never decides: the flow ends on its own, as `failed` with
    `timeout`, and frees its place (the limit is shortened here; it is 10 minutes)."""
    from kumix.app import verification_flows

    monkeypatch.setattr(verification_flows, "FLOW_SECONDS", 1.0)
    nobody = synapse.user("encabandoned")
    flow = ok(browser.post("/api/verifications", json={"user": nobody.user_id}))
    ended: dict[str, Any] | None = None
    for _ in range(600):
        ended = ok(browser.get(f"/api/verifications/{flow['id']}"))
        if ended["state"] != "requested":
            break
        time.sleep(0.05)
    assert ended is not None
    assert ended["state"] == "failed"
    assert ended["error"]["code"] == "timeout"
