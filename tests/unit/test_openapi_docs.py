"""``/docs`` documents every operation: a human summary, a description, and examples.

The examples are validated by the models they illustrate, so they cannot drift from
the schema. The app is built without its lifespan: no database, Redis or worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel

import api.schemas
from api.app import create_app
from shared.settings import Settings

try:  # FastAPI >= 0.165 keeps included routers nested: this walks them
    from fastapi.routing import iter_route_contexts
except ImportError:  # older FastAPI: app.routes is already flat
    iter_route_contexts = iter

JSON = "application/json"
APP = create_app(Settings())
SPEC: dict[str, Any] = APP.openapi()
COMPONENTS: dict[str, dict[str, Any]] = SPEC["components"]["schemas"]
OPERATIONS = [
    (path, method, operation)
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
]
IDS = [f"{method.upper()} {path}" for path, method, _ in OPERATIONS]
# Each documented operation's endpoint name, from which FastAPI makes its default summary.
ENDPOINT_NAMES = {
    (route.path_format, method.lower()): route.name
    for route in iter_route_contexts(APP.routes)
    if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema
    for method in route.methods or ()
}
# Models by component name: the API's own and those it imports from shared (AgentView, ...).
MODELS = {
    name: value
    for name, value in vars(api.schemas).items()
    if isinstance(value, type) and issubclass(value, BaseModel)
}


@pytest.fixture(autouse=True)
def _flush_redis() -> Iterator[None]:
    """Overrides the suite's Redis flush (tests/conftest.py): nothing here needs Redis."""
    yield


def _refs(schema: dict[str, Any] | None) -> list[str]:
    """Components a body or answer schema refers to: its ``$ref``, or its ``anyOf`` members'."""
    if not schema:
        return []
    members = [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]
    return [m["$ref"].rsplit("/", 1)[1] for m in members if "$ref" in m]


def _json_schema(content: dict[str, Any] | None) -> dict[str, Any] | None:
    media = (content or {}).get(JSON)
    return media.get("schema") if media else None


def _body_components(operation: dict[str, Any]) -> list[str]:
    return _refs(_json_schema(operation.get("requestBody", {}).get("content")))


def _answer_components(operation: dict[str, Any], only_2xx: bool = True) -> list[str]:
    return [
        name
        for status, answer in operation["responses"].items()
        if not only_2xx or status.startswith("2")
        for name in _refs(_json_schema(answer.get("content")))
    ]


# Components that some answer (any status) shows.
ANSWERS = {name for _, _, op in OPERATIONS for name in _answer_components(op, only_2xx=False)}


def _model(component: str) -> type[BaseModel]:
    name = component.removesuffix("-Input").removesuffix("-Output")
    assert name in MODELS, f"no model named {name} in api.schemas"
    return MODELS[name]


def _without_nulls(value: Any) -> Any:
    """What FastAPI publishes: it drops null values, examples' too (fastapi#5559)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_every_documented_operation_has_its_route() -> None:
    assert len(OPERATIONS) >= 30
    assert {(path, method) for path, method, _ in OPERATIONS} == set(ENDPOINT_NAMES)


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=IDS)
def test_operation_has_a_human_summary_and_a_description(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    generated = ENDPOINT_NAMES[(path, method)].replace("_", " ").title()
    summary = operation.get("summary", "")

    assert summary.strip() and summary != generated, f"summary {summary!r} is FastAPI's default"
    assert operation.get("description", "").strip()


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=IDS)
def test_json_bodies_and_answers_have_examples(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    components = _body_components(operation) + _answer_components(operation)

    for component in components:
        assert COMPONENTS[component].get("examples"), f"{component} has no examples"


@pytest.mark.parametrize(
    "component", sorted(name for name, schema in COMPONENTS.items() if "examples" in schema)
)
def test_examples_are_valid_for_their_model(component: str) -> None:
    model = _model(component)
    examples = model.model_json_schema()["examples"]
    published = COMPONENTS[component]["examples"]
    answer = component in ANSWERS

    assert examples
    if answer:  # FastAPI prints an answer's example without its nulls; the model keeps them
        assert published in (examples, _without_nulls(examples))
    else:  # a body's null means something (a PATCH removes the field): it must survive
        assert published == examples, "a request example sets a null, which FastAPI drops"
    for example in examples:
        parsed = model.model_validate(example)
        if answer:  # an answer's example is exactly what the API would send
            sent = parsed.model_dump(mode="json")
            assert {key: sent.get(key) for key in example} == example
