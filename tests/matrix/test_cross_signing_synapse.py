"""Cross-signing against the real test Synapse: a password login publishes the identity
and signs the device; a second device of the same account is told it is not verified; a
reset goes through user-interactive auth with the password."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.matrix.conftest import make_service
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app import key_backup, trust
from kumix.core.errors import Unauthorized
from kumix.store.key_backup_state import KeyBackupState


async def _no_password() -> str | None:
    return None


async def test_password_login_bootstraps_cross_signing_and_signs_the_device(
    synapse: SynapseHarness, alice_user: TestUser, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    said: list[str] = []
    first = make_service(tmp_path / "one", vault_env, progress=said.append)
    await first.login_password(synapse.url, alice_user.user_id, alice_user.password)
    assert "this device is cross-signed" in said
    async with first.session() as s:
        st = await trust.status(s.client, first.vault)
        assert st.has_identity
        assert st.identity_trusted
        assert st.device_signed
        assert st.device_verified
        assert set(st.private_keys) == {"master", "self_signing", "user_signing"}
        # The private keys are in the sealed vault, nowhere in plain text.
        seeds = first.vault.load()
        for usage in ("master", "self_signing", "user_signing"):
            assert seeds[f"cross_signing.{usage}"].encode() not in (tmp_path / "one" / "vault.json").read_bytes()
        master = st.master_key

    # A second device of the account: the identity exists, this device does not hold it.
    said.clear()
    second = make_service(tmp_path / "two", vault_env, progress=said.append)
    await second.login_password(synapse.url, alice_user.user_id, alice_user.password)
    assert any("not verified yet" in m for m in said)
    async with second.session() as s2:
        st2 = await trust.status(s2.client, second.vault)
        assert st2.has_identity
        assert st2.master_key == master
        assert not st2.identity_trusted
        assert not st2.device_signed
        assert not st2.device_verified
        assert await trust.bootstrap(s2.client, second.vault, _no_password) is False  # never replaced silently
        listing = await trust.devices(s2.client, second.vault)
        by_id = {d.device_id: d for d in listing.devices}
        assert by_id[st.device_id].trust == "cross_signed_unverified_identity"
        assert by_id[st2.device_id].trust == "not_cross_signed"
        assert by_id[st2.device_id].this_device

    # From the first device, its own listing says verified for itself.
    async with first.session() as s:
        mine = {d.device_id: d for d in (await trust.devices(s.client, first.vault)).devices}
        assert mine[st.device_id].trust == "verified"
        assert mine[st2.device_id].trust == "not_cross_signed"

        # A reset replaces the identity: the server demands the password (UIA).
        with pytest.raises(Unauthorized):
            await trust.bootstrap(s.client, first.vault, _no_password, reset=True)

        async def wrong() -> str | None:
            return "not the password"
        with pytest.raises(Unauthorized):
            await trust.bootstrap(s.client, first.vault, wrong, reset=True)
        assert (await trust.status(s.client, first.vault)).master_key == master  # nothing lost

        async def right() -> str | None:
            return alice_user.password
        assert await trust.bootstrap(s.client, first.vault, right, reset=True)
        st3 = await trust.status(s.client, first.vault)
        assert st3.master_key != master
        assert st3.device_verified



async def test_a_new_device_verified_by_sas_with_an_old_one_becomes_verified(
    synapse: SynapseHarness, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    """Two Kumix devices of one account, in one process: the old one (holding the keys)
    asks, the new one answers; the old one signs the new device, the new one trusts the
    identity it verified."""
    import asyncio

    from kumix.app.verification import Verifier

    user = synapse.user("dora")
    old = make_service(tmp_path / "old", vault_env)
    await old.login_password(synapse.url, user.user_id, user.password)
    new = make_service(tmp_path / "new", vault_env)
    await new.login_password(synapse.url, user.user_id, user.password)
    async with old.session() as s_old, new.session() as s_new:
        await s_old.sync()
        await s_new.sync()
        assert not (await trust.status(s_new.client, new.vault)).device_verified
        # A key backup the old device made (signed by the master key): the new device does
        # not trust it yet, so it would upload nothing to it.
        await key_backup.enable(s_old.client, old.vault)
        backups = KeyBackupState(new.db)
        assert not (await key_backup.status(s_new.client, new.vault, backups)).trusted
        asking, answering = Verifier(s_old), Verifier(s_new)
        v_old, v_new = await asyncio.gather(asking.request(user.user_id, s_new.account.device_id),
                                            answering.wait_request(user.user_id))
        await asyncio.gather(asking.wait_for_sas(v_old), answering.wait_for_sas(v_new))
        assert v_old.emoji() == v_new.emoji()
        await asyncio.gather(asking.confirm(v_old), answering.confirm(v_new))
        st = await trust.status(s_new.client, new.vault)
        assert st.device_signed
        assert st.identity_trusted
        assert st.device_verified
        assert st.private_keys == ()  # trusted by verification, holding no private key
        # Now it trusts the identity, and so the backup its master key signed.
        assert (await key_backup.status(s_new.client, new.vault, backups)).trusted


async def test_a_user_verified_from_another_device_still_warns_when_their_identity_changes(
    synapse: SynapseHarness, tmp_path: Path, vault_env: dict[str, str],
) -> None:
    """Erin verified Fred from another of her devices: here there is only her user-signing
    signature on Fred's master key, nothing pinned yet. Once this device has seen Fred
    verified, a replaced identity of Fred's is `identity_changed` (a warning, and messages to
    him held back), not a silent fall back to `unverified_identity`."""
    from kumix.core.errors import IdentityChanged
    from kumix.matrix import cross_signing

    erin_user, fred_user = synapse.user("erin"), synapse.user("fred")
    erin = make_service(tmp_path / "erin", vault_env)
    await erin.login_password(synapse.url, erin_user.user_id, erin_user.password)
    fred = make_service(tmp_path / "fred", vault_env)
    await fred.login_password(synapse.url, fred_user.user_id, fred_user.password)
    settings = trust.settings_of(erin.db)
    async with erin.session() as s:
        # What her other device's verification left on the server: her USK's signature of Fred's master.
        query = await trust.query_keys(s.client, [fred_user.user_id])
        identity = cross_signing.parse_identity(fred_user.user_id, query)
        assert identity is not None
        usk = trust.held_keys(erin.vault).user_signing
        assert usk is not None
        await trust.upload_signatures(s.client, {fred_user.user_id: {identity.master_key: cross_signing.sign_master_of(
            erin_user.user_id, identity.master_object, usk)}})
        assert settings.pinned(fred_user.user_id) is None
        seen = await trust.devices(s.client, erin.vault, fred_user.user_id, settings)
        assert seen.identity_verified
        assert settings.pinned(fred_user.user_id) == identity.master_key  # remembered as verified

        async with fred.session() as f:
            async def password() -> str | None:
                return fred_user.password
            assert await trust.bootstrap(f.client, fred.vault, password, reset=True)
        changed = await trust.devices(s.client, erin.vault, fred_user.user_id, settings)
        assert changed.identity_changed
        assert not changed.identity_verified
        room_id = await s.create_room(name="To Fred", encrypted=True, invite=(fred_user.user_id,))
        rules = trust.SharingRules(s.client, True, settings)
        with pytest.raises(IdentityChanged):
            await rules(room_id)
