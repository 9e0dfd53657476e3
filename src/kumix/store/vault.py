"""Credential vault: the access token and the crypto store's pickle key, encrypted at rest.

The only module that touches `keyring`, `argon2` and `cryptography`. Secrets are one JSON
document sealed with AES-256-GCM into `vault.json` (mode 0600). The 256-bit key comes from:

1. `KUMIX_VAULT_PASSPHRASE_FILE`: path of a file (mode 0600 or stricter, owned by the user)
   holding a passphrase; the key is argon2id(passphrase, salt). For scripts, CI and servers.
2. otherwise the OS keyring (`keyring`), when a real one exists (see `_is_os_keyring`: a
   recommended backend, priority >= 1, never keyrings.alt's files nor the fail/null
   backends): a random key stored there under service `kumix-vault`.
3. otherwise an interactive passphrase prompt (a TTY), again through argon2id.

With none of these, opening the vault fails with `unauthorized` and says how to supply the
key. A passphrase is never accepted in argv or in an environment variable: both leak to
every process that can list processes or inherits the environment. Secrets are never
logged, never written unencrypted, and never put into a child process's environment.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2.exceptions import HashingError
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kumix.core.errors import BadRequest, KumixError, Unauthorized, VaultCorrupt, WrongPassphrase
from kumix.fs.private_file import write_private

ENV_PASSPHRASE_FILE = "KUMIX_VAULT_PASSPHRASE_FILE"  # noqa: S105 - a variable name, not a secret
KEYRING_SERVICE = "kumix-vault"
FORMAT_VERSION = 1

ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 1
"""RFC 9106's second recommended profile (t=3, 64 MiB): ~0.2 s here, once per command."""

MAX_ARGON2_MEMORY_KIB = 1024 * 1024
MAX_ARGON2_TIME_COST = 16
"""Bounds on parameters read back from disk: a tampered vault file must not make Kumix
allocate gigabytes or spin for minutes before failing."""

MAX_PASSPHRASE_FILE_BYTES = 4096
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class KeySource:
    """How the key is obtained; `mode` is written into the vault so unlocking matches."""

    mode: str  # "passphrase" or "keyring"
    passphrase: Callable[[bool], str] | None = None  # argument: confirm (new vault)


def _read_passphrase_file(path_text: str) -> str:
    path = Path(path_text)
    try:
        # O_NONBLOCK: a FIFO at that path must not hang the command until someone writes.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise Unauthorized(f"{ENV_PASSPHRASE_FILE}: cannot open the passphrase file: {exc.strerror}") from None
    # The type is checked on the bare descriptor: fdopen refuses a directory with its own
    # IsADirectoryError, which would escape as an untyped error.
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Unauthorized(
            f"{ENV_PASSPHRASE_FILE}: {path_text!r} is not a regular file; point it at a passphrase file"
        )
    with os.fdopen(fd, "rb") as fh:
        if st.st_mode & 0o077:
            raise Unauthorized(
                f"{ENV_PASSPHRASE_FILE}: the passphrase file is readable by others; chmod 600 it first"
            )
        if st.st_uid != os.getuid():
            raise Unauthorized(f"{ENV_PASSPHRASE_FILE}: the passphrase file belongs to another user")
        data = fh.read(MAX_PASSPHRASE_FILE_BYTES + 1)
    if len(data) > MAX_PASSPHRASE_FILE_BYTES:
        raise Unauthorized(f"{ENV_PASSPHRASE_FILE}: passphrase file larger than {MAX_PASSPHRASE_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8", errors="strict").rstrip("\r\n")
    except UnicodeDecodeError:
        raise Unauthorized(f"{ENV_PASSPHRASE_FILE}: the passphrase file is not UTF-8 text") from None
    if not text:
        raise Unauthorized(f"{ENV_PASSPHRASE_FILE}: the passphrase file is empty")
    return text


def _ask(prompt: str) -> str:
    try:
        return getpass.getpass(prompt)
    except EOFError:  # Ctrl-D at the prompt: no passphrase, said as such
        raise Unauthorized("no vault passphrase entered") from None


def _prompt(confirm: bool) -> str:
    first = _ask("Kumix vault passphrase: ")
    if not first:
        raise Unauthorized("an empty vault passphrase is not accepted")
    if confirm and _ask("Repeat the passphrase: ") != first:
        raise Unauthorized("the two passphrases differ")
    return first


REFUSED_KEYRING_MODULES = ("keyrings.alt",)
"""Backends that are not an OS keyring whatever priority they claim: keyrings.alt's are files
next to the user's data (PlaintextKeyring keeps the secret in clear text)."""


def _is_os_keyring(backend: Any) -> bool:
    """A real OS keyring: keyring's own "recommended" rule (priority >= 1), never a fail, null,
    chainer or keyrings.alt backend. A class that cannot even report its priority is refused."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring | chainer.ChainerBackend):
        return False
    for cls in type(backend).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if any(module == refused or module.startswith(refused + ".") for refused in REFUSED_KEYRING_MODULES):
            return False
    try:
        return float(backend.priority) >= 1
    except Exception:  # keyring signals "not viable here" by raising from `priority`
        return False


def _os_keyring() -> Any | None:
    """The OS keyring backend the vault key goes to, or None when there is none.

    A chainer counts only through its best usable member, and that member is then used
    directly: going through the chainer would let a read fall through to, or a write land
    in, a weaker backend chained behind it."""
    try:
        import keyring
        from keyring.backends import chainer

        backend = keyring.get_keyring()
        if isinstance(backend, chainer.ChainerBackend):
            return next((member for member in backend.backends if _is_os_keyring(member)), None)
    except Exception:  # any import or backend discovery failure means "no keyring"
        return None
    return backend if _is_os_keyring(backend) else None


def _keyring_usable() -> bool:
    return _os_keyring() is not None


def _keyring_failure(action: str, exc: Exception) -> Unauthorized:
    # The message names the error's type and text, never a secret: keyring errors carry
    # neither the stored key nor the vault's contents.
    return Unauthorized(
        f"the OS keyring failed to {action} the credential vault's key ({type(exc).__name__}: {exc}); "
        f"to use a passphrase instead, set {ENV_PASSPHRASE_FILE} to a 0600 file holding one"
    )


def resolve_key_source(env: Mapping[str, str] | None = None, *, interactive: bool | None = None,
                       passphrase: str | None = None) -> KeySource:
    """The key source for a vault about to be created; see the module docstring for the order.
    `passphrase` is an answer already given where the prompt would ask (the web page's login
    form): used only when neither the file nor a keyring is there, like the prompt."""
    env = os.environ if env is None else env
    file_path = env.get(ENV_PASSPHRASE_FILE)
    if file_path:
        return KeySource("passphrase", lambda _confirm: _read_passphrase_file(file_path))
    if _keyring_usable():
        return KeySource("keyring")
    if passphrase is not None:
        if not passphrase:
            raise Unauthorized("an empty vault passphrase is not accepted")
        return KeySource("passphrase", lambda _confirm: passphrase)
    tty = sys.stdin.isatty() if interactive is None else interactive
    if tty:
        return KeySource("passphrase", _prompt)
    raise Unauthorized(
        f"no way to protect the credential vault: no OS keyring here and no terminal to ask a passphrase. "
        f"Put a passphrase in a file only you can read (chmod 600) and set {ENV_PASSPHRASE_FILE} to its path"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise VaultCorrupt("vault field is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise VaultCorrupt("vault field is not valid base64") from None


class Vault:
    """Secrets of one data directory. The key is derived once per process and kept in memory."""

    def __init__(self, path: Path, env: Mapping[str, str] | None = None, *, interactive: bool | None = None) -> None:
        self.path = path
        self._env = os.environ if env is None else env
        self._interactive = interactive
        self._key: bytes | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def _kdf(self, passphrase: str, salt: bytes, t: int, m: int, p: int) -> bytes:
        return hash_secret_raw(passphrase.encode("utf-8"), salt, time_cost=t, memory_cost=m, parallelism=p,
                               hash_len=32, type=Type.ID)

    def needs_passphrase(self) -> bool:
        """A new vault here would have no key source but a passphrase given by the caller
        (no passphrase file, no OS keyring, no terminal to ask on)."""
        if self._env.get(ENV_PASSPHRASE_FILE) or _keyring_usable():
            return False
        return not (sys.stdin.isatty() if self._interactive is None else self._interactive)

    def create(self, secrets_doc: Mapping[str, str], *, passphrase: str | None = None) -> None:
        """Seal secrets into a new vault (replacing any), choosing the key source now;
        `passphrase` as in `resolve_key_source`."""
        source = resolve_key_source(self._env, interactive=self._interactive, passphrase=passphrase)
        header: dict[str, Any] = {"version": FORMAT_VERSION, "mode": source.mode}
        if source.mode == "keyring":
            backend = _os_keyring()
            if backend is None:
                raise Unauthorized("the OS keyring went away while the credential vault was being created")
            vault_id = secrets.token_hex(16)
            key = secrets.token_bytes(KEY_BYTES)
            try:
                backend.set_password(KEYRING_SERVICE, vault_id, _b64(key))
            except Exception as exc:
                raise _keyring_failure("store", exc) from None
            header["keyring"] = {"service": KEYRING_SERVICE, "username": vault_id}
        else:
            assert source.passphrase is not None
            salt = secrets.token_bytes(16)
            key = self._kdf(source.passphrase(True), salt, ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM)
            header["kdf"] = {"name": "argon2id", "salt": _b64(salt), "t": ARGON2_TIME_COST,
                             "m": ARGON2_MEMORY_KIB, "p": ARGON2_PARALLELISM}
        self._key = key
        self._seal(header, dict(secrets_doc))

    def _seal(self, header: dict[str, Any], doc: dict[str, str]) -> None:
        assert self._key is not None
        nonce = secrets.token_bytes(NONCE_BYTES)
        aad = json.dumps(header, sort_keys=True).encode()
        ciphertext = AESGCM(self._key).encrypt(nonce, json.dumps(doc).encode(), aad)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.path, json.dumps({**header, "nonce": _b64(nonce), "ciphertext": _b64(ciphertext)}).encode())

    def _header(self) -> tuple[dict[str, Any], bytes, bytes]:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            raise Unauthorized("not logged in: this data directory has no credential vault") from None
        except (OSError, ValueError) as exc:
            raise VaultCorrupt(f"credential vault unreadable: {exc}") from None
        if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
            raise VaultCorrupt("credential vault has an unknown format")
        nonce, ciphertext = _unb64(raw.pop("nonce", None)), _unb64(raw.pop("ciphertext", None))
        return raw, nonce, ciphertext

    def _unlock_key(self, header: dict[str, Any]) -> bytes:
        if self._key is not None:
            return self._key
        mode = header.get("mode")
        if mode == "keyring":
            ref = header.get("keyring")
            if not isinstance(ref, dict):
                raise VaultCorrupt("credential vault has a malformed keyring reference")
            backend = _os_keyring()
            if backend is None:
                raise Unauthorized("the credential vault's key is in an OS keyring that is not available now")
            try:
                stored = backend.get_password(str(ref.get("service")), str(ref.get("username")))
            except Exception as exc:
                raise _keyring_failure("read", exc) from None
            if stored is None:
                raise Unauthorized("the credential vault's key is missing from the OS keyring")
            key = _unb64(stored)
        elif mode == "passphrase":
            key = self._passphrase_key(header, self._known_passphrase)
        else:
            raise VaultCorrupt("credential vault has an unknown key mode")
        return key

    def _known_passphrase(self) -> str:
        file_path = self._env.get(ENV_PASSPHRASE_FILE)
        if file_path:
            return _read_passphrase_file(file_path)
        if sys.stdin.isatty() if self._interactive is None else self._interactive:
            return _prompt(False)
        raise Unauthorized(
            f"the credential vault needs its passphrase: set {ENV_PASSPHRASE_FILE} to a 0600 file holding it"
        )

    def _passphrase_key(self, header: dict[str, Any], passphrase: Callable[[], str]) -> bytes:
        """argon2id of the passphrase, with the header's parameters checked first (a
        tampered file is reported as such before anyone is asked for a passphrase)."""
        kdf = header.get("kdf")
        if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
            raise VaultCorrupt("credential vault has an unknown key derivation")
        t, m, p = kdf.get("t"), kdf.get("m"), kdf.get("p")
        # `type(...) is int`: JSON true is a Python int too, and must not pass as 1.
        if not all(type(v) is int and v > 0 for v in (t, m, p)) or (
            int(t) > MAX_ARGON2_TIME_COST or int(m) > MAX_ARGON2_MEMORY_KIB or int(p) > 16  # type: ignore[arg-type]
        ):
            raise VaultCorrupt("credential vault has out-of-range key derivation parameters")
        salt = _unb64(kdf.get("salt"))
        given = passphrase()
        try:
            return self._kdf(given, salt, int(t), int(m), int(p))  # type: ignore[arg-type]
        except HashingError as exc:
            # Parameters argon2 refuses (a salt or memory cost below its minimum) can
            # only come from a modified file: report that, not an internal error.
            raise VaultCorrupt(f"credential vault has unusable key derivation parameters ({exc})") from None

    def locked(self) -> bool:
        """The vault exists, is sealed with a passphrase, and this process has neither its key
        nor a way to get the passphrase (no passphrase file, no terminal): only `unlock` opens it.
        A vault that cannot be read is not "locked": `load` says what is wrong with it."""
        if self._key is not None or self._env.get(ENV_PASSPHRASE_FILE) or not self.path.exists():
            return False
        if sys.stdin.isatty() if self._interactive is None else self._interactive:
            return False
        try:
            header, _, _ = self._header()
        except KumixError:
            return False
        return header.get("mode") == "passphrase"

    def unlock(self, passphrase: str) -> None:
        """Open a passphrase vault with a passphrase given by the caller (the web page's
        unlock form) and keep its key for this process. Reads only: a wrong passphrase is
        `wrong_passphrase` and leaves the file as it was."""
        header, nonce, ciphertext = self._header()
        if header.get("mode") != "passphrase":
            raise BadRequest("this credential vault's key is not a passphrase; there is nothing to unlock")
        if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
            raise VaultCorrupt("credential vault has a nonce or ciphertext of the wrong length")
        if not passphrase:
            raise WrongPassphrase("an empty passphrase does not open the credential vault")
        key = self._passphrase_key(header, lambda: passphrase)
        try:
            AESGCM(key).decrypt(nonce, ciphertext, json.dumps(header, sort_keys=True).encode())
        except InvalidTag:
            raise WrongPassphrase("the credential vault does not open with this passphrase") from None
        self._key = key

    def load(self) -> dict[str, str]:
        header, nonce, ciphertext = self._header()
        if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
            # Only a modified or truncated file gets here (AESGCM would raise a bare ValueError
            # for the nonce, or call a short ciphertext a wrong passphrase); checked before the KDF.
            raise VaultCorrupt("credential vault has a nonce or ciphertext of the wrong length")
        key = self._unlock_key(header)
        if len(key) != KEY_BYTES:
            raise VaultCorrupt("the credential vault's key has the wrong length")
        aad = json.dumps(header, sort_keys=True).encode()
        try:
            plain = AESGCM(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise Unauthorized("the credential vault does not open with this key (wrong passphrase?)") from None
        self._key = key
        doc = json.loads(plain)
        if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
            raise VaultCorrupt("credential vault content is malformed")
        return doc

    def update(self, changes: Mapping[str, str | None]) -> None:
        """Add or replace entries (None removes one), re-sealed under the same key and
        header: for secrets a session gains later (the cross-signing private keys)."""
        doc = self.load()
        header, _, _ = self._header()
        for name, value in changes.items():
            if value is None:
                doc.pop(name, None)
            else:
                doc[name] = value
        self._seal(header, doc)

    def destroy(self) -> None:
        """Remove the vault and, in keyring mode, its key from the keyring."""
        try:
            header, _, _ = self._header()
        except KumixError:
            header = {}
        ref = header.get("keyring")
        backend = _os_keyring() if isinstance(ref, dict) else None
        if isinstance(ref, dict) and backend is not None:
            # An entry already gone, or a keyring error, must not stop the local cleanup: the
            # key alone opens nothing once the vault file below is deleted.
            with contextlib.suppress(Exception):
                backend.delete_password(str(ref.get("service")), str(ref.get("username")))
        self.path.unlink(missing_ok=True)
        self._key = None
