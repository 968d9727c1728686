"""The catalog of provider kinds and their models, shipped as ``catalog.json``."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from shared.llm import ModelInfo

ProviderType = Literal["anthropic", "openai", "openai-compatible"]
OPEN_MODEL_TYPES: frozenset[str] = frozenset({"openai-compatible"})


class CatalogModel(BaseModel):
    id: str
    name: str
    context_window: int
    max_output_tokens: int
    supports_tools: bool
    cost_per_mtok_in: float
    cost_per_mtok_out: float
    reasoning: bool = False  # takes a reasoning effort, not a temperature or top_p


class CatalogProvider(BaseModel):
    id: str
    name: str
    type: ProviderType
    default_base_url: str
    models: list[CatalogModel]

    def model(self, model_id: str) -> CatalogModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def model_info(self, model_id: str, declared: list[dict[str, Any]]) -> ModelInfo | None:
        """The model as an instance serves it; None when neither the catalog nor the
        instance knows it and the provider type serves only known models."""
        known = self.model(model_id)
        own = next((m for m in declared if m.get("id") == model_id), None)
        if known is None and own is None and not self.accepts_any_model:
            return None
        values = known.model_dump(exclude={"name"}) if known else {"id": model_id}
        return ModelInfo(**(values | {k: v for k, v in (own or {}).items() if v is not None}))

    @property
    def accepts_any_model(self) -> bool:
        """OpenAI-compatible servers serve whatever models they have installed."""
        return self.type in OPEN_MODEL_TYPES

    @property
    def needs_credential(self) -> bool:
        return self.type not in OPEN_MODEL_TYPES


class Catalog(BaseModel):
    providers: list[CatalogProvider]

    def provider(self, provider_id: str) -> CatalogProvider | None:
        return next((p for p in self.providers if p.id == provider_id), None)


@lru_cache
def load_catalog() -> Catalog:
    return Catalog.model_validate(json.loads((Path(__file__).parent / "catalog.json").read_text()))
