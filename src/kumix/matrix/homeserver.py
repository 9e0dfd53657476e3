"""A local Synapse homeserver for `kumix demo` and the test suite.

Owns the generated configuration (SQLite, loopback listener only, no federation, no URL
previews or thumbnails), the Synapse process (its own session, so stopping it ends every
child) and shared-secret admin registration. Synapse runs as a separate Python process
(`python -m synapse.app.homeserver`) and is never imported here: it is an optional
dependency (the `demo` extra) and its imports are heavy.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumix.core.errors import HomeserverFailed, Unavailable
from kumix.fs.private_file import write_private

SERVER_NAME = "localhost"
"""Loopback-only homeservers never federate, so the name only has to be stable."""

START_TIMEOUT_S = 90.0
"""Synapse answers /versions after ~2 s on these machines; first start also creates the
schema (~10 s on a slow disk). 90 s is far beyond both and still ends a broken start."""

STOP_TIMEOUT_S = 15.0

_GENEROUS = {"per_second": 10_000, "burst_count": 100_000}
"""Rate limits for a private homeserver used by one person, a bot and tests: the defaults
(0.2 messages/s) exist to protect public servers from abuse, not a loopback sandbox."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class HomeserverConfig:
    """Everything under one directory: config, signing key, database, media, log."""

    directory: Path
    port: int

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    @property
    def secret_path(self) -> Path:
        return self.directory / "registration_secret"

    @property
    def log_path(self) -> Path:
        return self.directory / "homeserver.log"

    @property
    def pid_path(self) -> Path:
        return self.directory / "homeserver.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def registration_secret(self) -> str:
        return self.secret_path.read_text(encoding="utf-8").strip()

    def write(self) -> None:
        """Create or refresh the configuration; keys and secrets survive a rewrite so the
        database stays valid across runs (a second `kumix demo` reuses everything)."""
        d = self.directory
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        (d / "media").mkdir(exist_ok=True, mode=0o700)
        if not self.secret_path.exists():
            write_private(self.secret_path, secrets.token_urlsafe(32))
        macaroon = d / "macaroon_secret"
        if not macaroon.exists():
            write_private(macaroon, secrets.token_urlsafe(32))
        signing = d / "signing.key"
        if not signing.exists():
            # Synapse's key file format: "ed25519 <key id> <unpadded base64 seed>".
            seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            write_private(signing, f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        log_config = d / "log.yaml"
        write_private(
            log_config,
            "version: 1\n"
            "formatters:\n  precise:\n    format: '%(asctime)s %(levelname)s %(name)s %(message)s'\n"
            "handlers:\n  file:\n    class: logging.FileHandler\n    formatter: precise\n"
            f"    filename: {json.dumps(str(self.log_path))}\n"
            "root:\n  level: WARNING\n  handlers: [file]\n"
            "disable_existing_loggers: false\n",
        )
        config: dict[str, Any] = {
            "server_name": SERVER_NAME,
            "pid_file": str(self.pid_path),
            "public_baseurl": self.url + "/",
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(d / "media"),
            "registration_shared_secret_path": str(self.secret_path),
            "macaroon_secret_key": macaroon.read_text(encoding="utf-8").strip(),
            "form_secret": macaroon.read_text(encoding="utf-8").strip()[::-1],
            "signing_key_path": str(signing),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "enable_registration": False,
            # A loopback sandbox: cheap password hashing keeps registration and login fast.
            "bcrypt_rounds": 4,
            "url_preview_enabled": False,
            "dynamic_thumbnails": False,
            "thumbnail_sizes": [],
            "max_upload_size": "50M",
            "presence": {"enabled": False},
            "enable_metrics": False,
            "update_user_directory_from_worker": None,
            "rc_message": _GENEROUS,
            "rc_registration": _GENEROUS,
            "rc_login": {"address": _GENEROUS, "account": _GENEROUS, "failed_attempts": _GENEROUS},
            "rc_admin_redaction": _GENEROUS,
            "rc_joins": {"local": _GENEROUS, "remote": _GENEROUS},
            "rc_joins_per_room": _GENEROUS,
            "rc_invites": {"per_room": _GENEROUS, "per_user": _GENEROUS, "per_issuer": _GENEROUS},
            "rc_key_requests": _GENEROUS,
            "rc_3pid_validation": _GENEROUS,
            "rc_media_create": _GENEROUS,
            "rc_room_creation": _GENEROUS,
            "rc_presence": {"per_user": _GENEROUS},
            "rc_delayed_event_mgmt": _GENEROUS,
            "rc_reports": _GENEROUS,
            "rc_profile": _GENEROUS,
            "rc_user_directory": _GENEROUS,
        }
        config = {k: v for k, v in config.items() if v is not None}
        # JSON is valid YAML, which spares a YAML writer dependency.
        write_private(self.config_path, json.dumps(config, indent=2))


def _child_env() -> dict[str, str]:
    """Synapse gets the environment minus anything of Kumix's (vault key file paths)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KUMIX_")}


class Homeserver:
    """One Synapse process; `start` waits until it answers, `stop` leaves nothing behind."""

    def __init__(self, config: HomeserverConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.config.url

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.config.write()
        self.config.pid_path.unlink(missing_ok=True)
        with open(self.config.directory / "homeserver.stderr", "ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=_child_env(),
                cwd=self.config.directory,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = (self.config.directory / "homeserver.stderr").read_text(errors="replace")[-2000:]
                self._proc = None
                raise HomeserverFailed(f"Synapse exited during start: {tail}")
            if self.is_answering():
                return
            time.sleep(0.1)
        self.stop()
        raise HomeserverFailed(f"Synapse did not answer within {timeout:.0f} s")

    def is_answering(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_matrix/client/versions", timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after STOP_TIMEOUT_S."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._signal_group(proc, signal.SIGKILL)
            proc.wait()

    def kill(self) -> None:
        """Die like a crashed server: no shutdown handlers, responses in flight are lost."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._signal_group(proc, signal.SIGKILL)
        proc.wait()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections are accepted by the kernel but never answered."""
        if self._proc is not None:
            self._signal_group(self._proc, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._signal_group(self._proc, signal.SIGCONT)

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def __enter__(self) -> Homeserver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- administration through the HTTP API --------------------------------------------

    def register(self, username: str, password: str, *, admin: bool = False) -> str:
        """Create a user with the shared-secret admin API; returns the Matrix user id.

        Registering a user that exists is not an error: the demo and the tests re-run."""
        nonce = self._request("GET", "/_synapse/admin/v1/register")["nonce"]
        # The MAC covers the four fields joined by NULs, without a trailing NUL.
        mac = hmac.new(self.config.registration_secret().encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join(p.encode() for p in (nonce, username, password, "admin" if admin else "notadmin")))
        digest = mac.hexdigest()
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": digest}
        try:
            return str(self._request("POST", "/_synapse/admin/v1/register", body)["user_id"])
        except HomeserverFailed as exc:
            if "M_USER_IN_USE" in exc.message:
                return f"@{username}:{SERVER_NAME}"
            raise

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 - loopback URL built here
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                doc: dict[str, Any] = json.loads(resp.read())
                return doc
        except urllib.error.HTTPError as exc:
            raise HomeserverFailed(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except OSError as exc:
            raise Unavailable(f"{method} {path}: {exc}") from None
