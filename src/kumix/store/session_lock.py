"""One Kumix process at a time uses an account's device.

A data directory holds one Matrix device: its Olm account, Olm and Megolm sessions live in
nio's crypto store and, while a client runs, in that process's memory. Two processes using
the device at once each keep their own copy and write it back over the other's: one-time keys
uploaded by one are lost when the other saves, and room keys one creates are unknown to the
other, so messages become undecryptable for good. The session lock makes that impossible.

The lock is `flock` on `<data dir>/matrix/session.lock`: the kernel drops it when its holder
exits, however it exits, so a killed process never leaves a stale lock. The file names the
holder (pid and command) so that the refused process can say who has the device.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from kumix.core.errors import StateBusy

MAX_HOLDER_BYTES = 4096


class SessionLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, command: str) -> None:
        """Take the device or raise `StateBusy` naming the process that has it."""
        if self._fd is not None:
            raise StateBusy("this process already uses the account's device")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_NOFOLLOW: a symlink planted in the data directory must not make us truncate
        # whatever it points at. The descriptor is close-on-exec; children Kumix starts are
        # spawned with their descriptors closed, so none inherits the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            who = f"pid {holder['pid']}, {holder['command']}" if holder else "another process"
            raise StateBusy(
                f"another Kumix process ({who}) is using this account's device; "
                "this needs it to stop first (text messages can be handed to it instead)",
                # Always present (None when unknown): it is what tells this refusal apart
                # from a database lock timeout, which is `state_busy` too.
                details={"holder": holder},
            ) from None
        except BaseException:
            os.close(fd)
            raise
        doc = json.dumps({"pid": os.getpid(), "command": command[:200]}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, doc, 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Emptied first: a reader between unlock and close must not name a process
            # that no longer holds the device.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        """Who holds the device, as written by the holder; None when unknown."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            raw = os.read(fd, MAX_HOLDER_BYTES)
        finally:
            os.close(fd)
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("pid"), int) or not isinstance(doc.get("command"), str):
            return None
        return {"pid": doc["pid"], "command": doc["command"]}
