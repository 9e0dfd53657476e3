"""Cross-signing against the real test Synapse: a password login publishes the identity
and signs the device; a second device of the same account is told it is not verified; a
reset goes through user-interactive auth with the password."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.matrix.conftest import make_service
from tests.synapse_harness import SynapseHarness, TestUser

from kumix.app import trust
from kumix.core.errors import Unauthorized


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

