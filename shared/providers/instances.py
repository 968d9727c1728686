"""Provider instances and their credentials: store functions, one transaction each.

A credential is encrypted before it reaches these functions and is never
returned by them: ``InstanceView`` says only whether one exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from shared.errors import AlreadyExists, InstanceMissing, InvalidRequest
from shared.models import Credential, ProviderInstance, new_id, table, utcnow
from shared.providers.catalog import load_catalog
from shared.sql import Prepared


class InstanceView(BaseModel):
    id: str
    name: str
    catalog_provider_id: str
    base_url: str | None
    timeout_s: float
    has_credential: bool
    models: list[dict[str, Any]] = []
    limits: dict[str, Any] = {}
    cooldowns: list[dict[str, Any]] = []  # filled by the API from Redis


def _view(session: Session, row: ProviderInstance) -> InstanceView:
    has = session.get(Credential, row.id) is not None
    return InstanceView(
        id=row.id,
        name=row.name,
        catalog_provider_id=row.catalog_provider_id,
        base_url=row.base_url,
        timeout_s=row.timeout_s,
        has_credential=has,
        models=row.models,
        limits=row.limits,
    )


def _check_catalog_id(catalog_provider_id: str) -> None:
    if load_catalog().provider(catalog_provider_id) is None:
        known = ", ".join(p.id for p in load_catalog().providers)
        raise InvalidRequest(
            f"unknown catalog_provider_id {catalog_provider_id!r}: use one of {known}"
        )


def create_instance(
    session: Session,
    *,
    name: str,
    catalog_provider_id: str,
    base_url: str | None = None,
    timeout_s: float = 60.0,
    encrypted_key: str | None = None,
    instance_id: str | None = None,
    upsert: bool = False,
    models: list[dict[str, Any]] | None = None,
    limits: dict[str, Any] | None = None,
) -> InstanceView:
    _check_catalog_id(catalog_provider_id)
    instance_id = instance_id or new_id("pi")
    row = session.get(ProviderInstance, instance_id)
    if row is not None and not upsert:
        raise AlreadyExists(f"provider instance {instance_id!r} already exists")
    if row is None:
        row = ProviderInstance(id=instance_id, name=name, catalog_provider_id=catalog_provider_id)
    row.name, row.catalog_provider_id = name, catalog_provider_id
    row.base_url, row.timeout_s = base_url, timeout_s
    row.models, row.limits = models or [], limits or {}
    session.add(row)
    session.flush()
    if encrypted_key is not None:
        _set_credential(session, instance_id, encrypted_key)
    return _view(session, row)


def _set_credential(session: Session, instance_id: str, encrypted_key: str) -> None:
    cred = session.get(Credential, instance_id) or Credential(
        instance_id=instance_id, ciphertext=""
    )
    cred.ciphertext, cred.updated_at = encrypted_key, utcnow()
    session.add(cred)


def get_instance(session: Session, instance_id: str) -> InstanceView:
    row = session.get(ProviderInstance, instance_id)
    if row is None:
        raise InstanceMissing(f"provider instance {instance_id!r} does not exist")
    return _view(session, row)


def list_instances(session: Session, after: str | None, limit: int) -> list[InstanceView]:
    query = select(ProviderInstance).order_by(ProviderInstance.id).limit(limit)
    if after:
        query = query.where(ProviderInstance.id > after)
    return [_view(session, row) for row in session.exec(query)]


def update_instance(
    session: Session, instance_id: str, changes: dict[str, Any], encrypted_key: str | None
) -> InstanceView:
    row = session.get(ProviderInstance, instance_id)
    if row is None:
        raise InstanceMissing(f"provider instance {instance_id!r} does not exist")
    if "catalog_provider_id" in changes:
        _check_catalog_id(changes["catalog_provider_id"])
    for field, value in changes.items():
        setattr(row, field, value)
    session.add(row)
    if encrypted_key is not None:
        _set_credential(session, instance_id, encrypted_key)
    return _view(session, row)


def delete_instance(session: Session, instance_id: str) -> None:
    row = session.get(ProviderInstance, instance_id)
    if row is None:
        raise InstanceMissing(f"provider instance {instance_id!r} does not exist")
    cred = session.get(Credential, instance_id)
    if cred is not None:
        session.delete(cred)
        session.flush()
    session.delete(row)


@dataclass(frozen=True)
class InstanceRead:
    """An instance and its credential's ciphertext as one transaction read them (None: absent)."""

    instance_id: str
    found: tuple[ProviderInstance, str | None] | None


_INSTANCES, _CREDENTIALS = table(ProviderInstance), table(Credential)
_INSTANCE_AND_CREDENTIAL = Prepared(  # every claim runs it
    core_select(*_INSTANCES.c, _CREDENTIALS.c.ciphertext)
    .outerjoin(_CREDENTIALS, _CREDENTIALS.c.instance_id == _INSTANCES.c.id)
    .where(_INSTANCES.c.id == bindparam("instance_id"))
)


def load_instance_and_credential(
    session: Session, instance_id: str
) -> tuple[ProviderInstance, str | None] | None:
    row = _INSTANCE_AND_CREDENTIAL.execute(session, {"instance_id": instance_id}).first_mapping()
    if row is None:
        return None
    ciphertext = row.pop("ciphertext")
    return ProviderInstance(**row), ciphertext
