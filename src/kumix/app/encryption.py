"""The encryption-trust use cases of one logged-in device, for front ends: cross-signing,
recovery (secret storage), key backup, verification and the devices of a user.

`Kumix.encryption()` hands one out; it holds the device's session, so a front end never
touches the Matrix adapter or the vault itself. The work is done by `kumix.app.trust`,
`recovery`, `key_backup` and `verification`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from kumix.app import key_backup, recovery, trust
from kumix.app.verification import Verifier

if TYPE_CHECKING:
    from kumix.app.key_backup import BackupStatus, RestoreResult
    from kumix.app.matrix_session import Session
    from kumix.app.recovery import RecoveryStatus
    from kumix.core.trust import CrossSigningStatus, UserDevices
    from kumix.matrix.client import MatrixClient
    from kumix.matrix.key_backup import BackupVersion
    from kumix.store.vault import Vault


class Encryption:
    def __init__(self, session: Session, progress: Callable[[str], None]) -> None:
        self._session = session
        self._progress = progress
        self._verifier: Verifier | None = None

    @property
    def _client(self) -> MatrixClient:
        return self._session.client

    @property
    def _vault(self) -> Vault:
        return self._session.service.vault

    # -- cross-signing ---------------------------------------------------------------------

    async def cross_signing_status(self) -> CrossSigningStatus:
        return await trust.status(self._client, self._vault)

    async def bootstrap_cross_signing(self, password: Callable[[], Awaitable[str | None]], *,
                                      reset: bool = False) -> tuple[bool, CrossSigningStatus]:
        """Create (or, with `reset`, replace) the identity and sign this device; False when
        the account has an identity this device does not hold (verify it instead)."""
        done = await trust.bootstrap(self._client, self._vault, password, reset=reset)
        return done, await self.cross_signing_status()

    # -- recovery --------------------------------------------------------------------------

    async def set_up_recovery(self) -> str:
        """A new recovery key, returned once and kept nowhere."""
        return await recovery.setup(self._client, self._vault)

    async def recovery_status(self) -> RecoveryStatus:
        return await recovery.status(self._client)

    async def use_recovery(self, *, recovery_key: str | None = None,
                           passphrase: str | None = None) -> CrossSigningStatus:
        await recovery.use(self._client, self._vault, recovery_key=recovery_key, passphrase=passphrase)
        return await self.cross_signing_status()

    # -- key backup ------------------------------------------------------------------------

    async def backup_status(self) -> BackupStatus:
        return await key_backup.status(self._client, self._vault, key_backup.state_of(self._session))

    async def enable_backup(self) -> BackupVersion:
        version = await key_backup.enable(self._client, self._vault)
        await self.upload_backup()
        return version

    async def upload_backup(self) -> int:
        return await key_backup.upload_pending(self._client, self._vault, key_backup.state_of(self._session))

    async def restore_backup(self) -> RestoreResult:
        return await key_backup.restore(self._session, self._progress)

    # -- devices and verification ----------------------------------------------------------

    async def devices(self, user_id: str | None = None, *, accept_new_identity: bool = False) -> UserDevices:
        db = self._session.service.db
        if accept_new_identity and user_id is not None:
            await trust.accept_new_identity(self._client, db, user_id)
        return await trust.devices(self._client, self._vault, user_id, trust.settings_of(db))

    def verifier(self) -> Verifier:
        """The session's verification flows (one `Verifier` per session: it owns the
        to-device and in-room verification events that arrive)."""
        if self._verifier is None:
            self._verifier = Verifier(self._session)
        return self._verifier
