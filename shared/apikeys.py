"""API keys: store functions, one transaction each. Keys are stored hashed, never in clear.

A key is shown once, when it is created; afterwards only its ``prefix`` (its
first characters) identifies it. Lookup is by hash, so a revoked key stops
working on the next request.
"""

from __future__ import annotations

import hmac

from sqlalchemy import bindparam, func
from sqlmodel import Session, col, select

from shared.crypto import hash_api_key, new_api_key
from shared.errors import ApiKeyNotFound
from shared.models import ApiKey, new_id, utcnow

MAX_PREFIX_CHARS = 8


def _prefix(plaintext: str) -> str:
    """Enough to tell keys apart, never enough to matter (at most a quarter of the key)."""
    return plaintext[: min(MAX_PREFIX_CHARS, len(plaintext) // 4)]


def _store(session: Session, name: str, plaintext: str) -> ApiKey:
    row = ApiKey(
        id=new_id("key"), name=name, key_hash=hash_api_key(plaintext), prefix=_prefix(plaintext)
    )
    session.add(row)
    session.flush()
    return row


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """A new key; returns the row and the plaintext, which is not stored anywhere."""
    plaintext = new_api_key()
    return _store(session, name, plaintext), plaintext


def ensure_key(session: Session, name: str, plaintext: str) -> ApiKey:
    """Store ``plaintext`` (e.g. the bootstrap key) hashed unless a key with its hash exists."""
    existing = session.exec(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(plaintext))
    ).first()
    return existing if existing is not None else _store(session, name, plaintext)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Revoke at once; raises ApiKeyNotFound. Revoking twice keeps the first time."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise ApiKeyNotFound(f"API key {key_id!r} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    return row


_KEY_BY_HASH = select(ApiKey).where(col(ApiKey.key_hash) == bindparam("digest"))  # every request


def verify_key(session: Session, plaintext: str) -> ApiKey | None:
    """The active key ``plaintext`` is, or None (unknown or revoked)."""
    digest = hash_api_key(plaintext)
    row = session.exec(_KEY_BY_HASH, params={"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.revoked_at is not None:
        return None
    return row


def count_active(session: Session) -> int:
    return session.exec(
        select(func.count()).select_from(ApiKey).where(col(ApiKey.revoked_at).is_(None))
    ).one()
