"""The key that encrypts credentials at rest, and API key hashing.

``BOBBIN_SECRET_KEY`` is used as-is when it is a Fernet key; otherwise a key is
derived from it with HKDF and a fixed salt. Without it, a key file under the
data directory serves the default SQLite database on loopback only. The
database keeps the key's fingerprint, so a process started with another key
refuses to start instead of failing to decrypt later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlmodel import Session

from shared.errors import BobbinError
from shared.models import Meta
from shared.settings import Settings

HKDF_SALT = b"bobbin-credentials-v1"
FINGERPRINT_KEY = "secret_key_fingerprint"
API_KEY_PREFIX = "bob_"


class SecretKeyError(BobbinError):
    code = "secret_key_invalid"


def derive_fernet_key(secret: str) -> bytes:
    try:
        Fernet(secret.encode())
        return secret.encode()
    except ValueError:
        pass
    if len(secret) < 32:
        raise SecretKeyError("BOBBIN_SECRET_KEY must be a Fernet key or at least 32 characters")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=b"fernet")
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


def load_fernet_key(settings: Settings, *, loopback: bool) -> bytes:
    """The credential key for this process; raises SecretKeyError with the reason."""
    if settings.secret_key is not None:
        return derive_fernet_key(settings.secret_key.get_secret_value())
    if not (settings.database_url == "" and loopback):
        raise SecretKeyError(
            "BOBBIN_SECRET_KEY is not set: a generated key serves only the default SQLite "
            "database on loopback; set BOBBIN_SECRET_KEY to a secret of 32+ characters"
        )
    return _key_file(settings.data_dir / "secret.key")


def _key_file(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"bobbin-fingerprint:" + key).hexdigest()[:32]


def check_fingerprint(session: Session, key: bytes) -> None:
    """Record the key's fingerprint on first start; refuse a different key afterwards."""
    row = session.get(Meta, FINGERPRINT_KEY)
    if row is None:
        session.add(Meta(key=FINGERPRINT_KEY, value=fingerprint(key)))
    elif not hmac.compare_digest(row.value, fingerprint(key)):
        raise SecretKeyError(
            "BOBBIN_SECRET_KEY does not match the key this database's credentials were "
            "encrypted with: start with the original key"
        )


class Cipher:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a stored credential cannot be decrypted with this key") from exc


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """API keys are random and long, so one SHA-256 suffices (no slow hash needed)."""
    return hashlib.sha256(key.encode()).hexdigest()
