"""The provider catalog and provider instances (credentials go in, never come back out)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from api.deps import DbDep, PageDep, RegistryDep, ResourcesDep
from api.schemas import (
    CatalogOut,
    InstanceCreate,
    InstanceList,
    InstanceTestIn,
    InstanceTestOut,
    InstanceUpdate,
    iso_utc,
)
from shared.errors import ProviderError
from shared.providers.catalog import load_catalog
from shared.providers.instances import (
    InstanceView,
    create_instance,
    delete_instance,
    get_instance,
    list_instances,
    update_instance,
)

router = APIRouter(tags=["providers"])


@router.get("/providers/catalog", summary="List the provider catalog")
async def get_catalog() -> CatalogOut:
    """The provider kinds Bobbin speaks and the models it knows for each, with their prices.

    An ``openai-compatible`` instance may also serve models the catalog does not list.
    """
    return CatalogOut(providers=load_catalog().providers)


@router.post("/provider-instances", status_code=201, summary="Create a provider instance")
async def create_provider_instance(body: InstanceCreate, resources: ResourcesDep) -> InstanceView:
    """Add an endpoint and (optionally) its credential, which is stored encrypted and never
    shown back (the instance says ``has_credential``).

    409 ``already_exists`` when the ``id`` is taken; 422 for an unknown
    ``catalog_provider_id``.
    """
    encrypted = resources.cipher.encrypt(body.credential.api_key) if body.credential else None
    models, limits = body.declared()
    return await resources.db.run(
        lambda s: create_instance(
            s,
            name=body.name,
            catalog_provider_id=body.catalog_provider_id,
            base_url=body.base_url,
            timeout_s=body.timeout_s,
            encrypted_key=encrypted,
            instance_id=body.id,
            models=models,
            limits=limits,
        )
    )


@router.get("/provider-instances", summary="List provider instances")
async def list_provider_instances(db: DbDep, page: PageDep) -> InstanceList:
    """Every provider instance, ordered by id; credentials are never shown."""
    rows = await db.read(list_instances, page.cursor, page.fetch)
    rows, next_cursor = page.cut(rows, lambda row: row.id)
    return InstanceList(provider_instances=rows, next_cursor=next_cursor)


@router.get("/provider-instances/{instance_id}", summary="Get a provider instance")
async def get_provider_instance(instance_id: str, resources: ResourcesDep) -> InstanceView:
    """An instance, with the cooldowns its provider asked for that are in force now.

    404 ``provider_instance_not_found`` for an unknown id.
    """
    view = await resources.db.read(get_instance, instance_id)
    cooldowns = await resources.flow.throttle.cooldowns(instance_id)
    view.cooldowns = [{"model_id": model, "until": iso_utc(until)} for model, until in cooldowns]
    return view


@router.patch("/provider-instances/{instance_id}", summary="Update a provider instance")
async def update_provider_instance(
    instance_id: str, body: InstanceUpdate, resources: ResourcesDep
) -> InstanceView:
    """Change fields; omitted ones stay, and a new ``credential`` replaces the stored one.

    404 ``provider_instance_not_found`` for an unknown id.
    """
    changes = body.changes("name", "catalog_provider_id", "base_url", "timeout_s")
    changes |= body.declared()
    encrypted = resources.cipher.encrypt(body.credential.api_key) if body.credential else None
    return await resources.db.run(update_instance, instance_id, changes, encrypted)


@router.delete(
    "/provider-instances/{instance_id}", status_code=204, summary="Delete a provider instance"
)
async def delete_provider_instance(instance_id: str, db: DbDep) -> Response:
    """Delete an instance and its credential (204), even while agents use it.

    Agents using it keep existing: their next turns fail with
    ``provider_instance_not_found`` until they are switched.
    """
    await db.run(delete_instance, instance_id)
    return Response(status_code=204)


@router.post(
    "/provider-instances/{instance_id}/test",
    response_model_exclude_none=True,
    summary="Test a provider instance",
)
async def test_provider_instance(
    instance_id: str,
    db: DbDep,
    registry: RegistryDep,
    body: Annotated[InstanceTestIn | None, Body()] = None,
) -> InstanceTestOut:
    """Really call the endpoint (list its models) with the stored credential.

    ``model_id`` (default: the catalog's first model) is the model the provider is made for.
    A provider failure still answers 200, with ``ok: false`` and the error; an unknown
    instance answers 404 ``provider_instance_not_found``.
    """
    view = await db.read(get_instance, instance_id)
    model_id = body.model_id if body and body.model_id else _default_model(view)
    try:
        provider = await registry.create_provider_from_instance_and_model(instance_id, model_id)
        models = await provider.list_models()
    except ProviderError as exc:
        return InstanceTestOut(ok=False, error=exc.to_dict())
    return InstanceTestOut(ok=True, models=models)


def _default_model(view: InstanceView) -> str:
    catalog = load_catalog().provider(view.catalog_provider_id)
    return catalog.models[0].id if catalog and catalog.models else "default"
