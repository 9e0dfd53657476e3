"""A real Secret Service for the tests: a private D-Bus session bus with gnome-keyring-daemon.

Nothing here touches the user's own keyring or session: the bus is a new `dbus-daemon` with
its own configuration (its socket in the session's directory, no service activation, so it
never starts a daemon on its own), and the keyring daemon runs with HOME, XDG_DATA_HOME,
XDG_CONFIG_HOME, XDG_CACHE_HOME and XDG_RUNTIME_DIR inside the session's directory, so its
keyring files are new ones there. Both daemons are children of this process, run in the
foreground, and are stopped by `stop()`, which then checks that no process carrying the
session's marker is left.

Processes that should use this keyring get `env` (DBUS_SESSION_BUS_ADDRESS and the rest); the
test process itself never talks to it through the `keyring` package, whose backend choice is
cached per process.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from jeepney import DBus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

SECRETS_BUS_NAME = "org.freedesktop.secrets"
MARKER = "KEYRING_TEST_SESSION"
START_DEADLINE_S = 60.0  # a dead or wedged daemon fails the fixture; not a performance check

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={socket_dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def processes_with_marker(value: str) -> list[int]:
    """Live processes whose environment carries MARKER=value (zombies have no environment)."""
    needle = f"{MARKER}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


class KeyringSession:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = secrets.token_hex(8)
        self.unlock_password = secrets.token_urlsafe(16)
        self.home = root / "home"
        self.data_home = root / "data"
        self._bus: subprocess.Popen[str] | None = None
        self._keyringd: subprocess.Popen[str] | None = None
        self.address = ""

    @property
    def env(self) -> dict[str, str]:
        """A complete environment for a process that should see this keyring and nothing else."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.data_home),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_CACHE_HOME": str(self.root / "cache"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            MARKER: self.marker,
        }
        if self.address:
            env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        return env

    def start(self) -> None:
        for name in ("home", "data", "config", "cache", "run", "bus"):
            (self.root / name).mkdir(mode=0o700, parents=True, exist_ok=True)
        config = self.root / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket_dir=self.root / "bus"))
        self._bus = subprocess.Popen(
            ["dbus-daemon", "--nofork", f"--config-file={config}", "--print-address=1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        assert self._bus.stdout is not None
        self.address = self._bus.stdout.readline().strip()
        if not self.address.startswith("unix:"):
            self.stop()
            raise RuntimeError(f"dbus-daemon gave no address: {self.address!r}")
        # --unlock reads the login keyring's password from stdin, creating that keyring
        # (unlocked, the default collection) since none exists in this fresh XDG_DATA_HOME.
        self._keyringd = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=self.env,
        )
        assert self._keyringd.stdin is not None
        self._keyringd.stdin.write(self.unlock_password)
        self._keyringd.stdin.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        import secretstorage

        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            assert self._keyringd is not None
            if self._keyringd.poll() is not None:
                raise RuntimeError(f"gnome-keyring-daemon exited: {self._stderr(self._keyringd)}")
            with self.connect() as conn:
                owned = unwrap_msg(conn.send_and_get_reply(DBus().NameHasOwner(SECRETS_BUS_NAME)))[0]
                if owned:
                    try:
                        if not secretstorage.Collection(conn).is_locked():
                            return
                    except secretstorage.exceptions.SecretStorageException:
                        pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Secret Service did not come up on the private bus")
            time.sleep(0.05)

    def connect(self) -> DBusConnection:
        """A direct D-Bus connection to this session's bus (for inspecting the keyring)."""
        return open_dbus_connection(bus=self.address)

    def items(self, attributes: dict[str, str]) -> list[tuple[dict[str, str], bytes]]:
        """(attributes, secret) of every Secret Service item matching, read without `keyring`."""
        import secretstorage

        with self.connect() as conn:
            return [(item.get_attributes(), item.get_secret())
                    for item in secretstorage.search_items(conn, attributes)]

    def delete_items(self, attributes: dict[str, str]) -> int:
        import secretstorage

        with self.connect() as conn:
            found = list(secretstorage.search_items(conn, attributes))
            for item in found:
                item.delete()
        return len(found)

    @staticmethod
    def _stderr(proc: subprocess.Popen[Any]) -> str:
        return proc.stderr.read() if proc.stderr is not None else ""

    def stop(self) -> None:
        for proc in (self._keyringd, self._bus):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        left = processes_with_marker(self.marker)
        assert not left, f"processes of the test keyring session are still running: {left}"
