"""Projects: a working directory and the configuration their sessions inherit."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlmodel import Session

from api.deps import DbDep, PageDep
from api.schemas import ProjectCreate, ProjectList, ProjectOut, ProjectUpdate, config_patch
from shared.budgets import spent_usd
from shared.models import Project
from shared.sessions import (
    create_project,
    delete_project,
    get_project,
    list_projects,
    update_project,
)

router = APIRouter(tags=["projects"])


def _out(session: Session, project: Project) -> ProjectOut:
    return ProjectOut.of(project, spent_usd(session, project.id, project.budget))


@router.post("/projects", status_code=201, summary="Create a project")
async def create(body: ProjectCreate, db: DbDep) -> ProjectOut:
    """Create a project: the working directory and configuration its sessions inherit.

    ``working_directory`` defaults to ``./data/workspaces/<project_id>`` on the workers;
    a ``budget`` bounds what the project's model calls may cost per window.
    """
    configuration = body.configuration.model_dump(exclude_none=True) if body.configuration else {}
    budget = body.budget.model_dump() if body.budget else None

    def write(session: Session) -> ProjectOut:
        project = create_project(session, body.name, body.working_directory, configuration, budget)
        return ProjectOut.of(project, "0" if budget else None)

    return await db.run(write)


@router.get("/projects", summary="List projects")
async def list_all(db: DbDep, page: PageDep) -> ProjectList:
    """Every project, ordered by id, each with ``spent_usd`` in its budget's current window."""

    def read(session: Session) -> list[ProjectOut]:
        return [_out(session, row) for row in list_projects(session, page.cursor, page.fetch)]

    rows, next_cursor = page.cut(await db.read(read), lambda row: row.id)
    return ProjectList(projects=rows, next_cursor=next_cursor)


@router.get("/projects/{project_id}", summary="Get a project")
async def get(project_id: str, db: DbDep) -> ProjectOut:
    """A project, with ``spent_usd`` in its budget's current window.

    404 ``project_not_found`` for an unknown id.
    """
    return await db.read(lambda s: _out(s, get_project(s, project_id)))


@router.patch("/projects/{project_id}", summary="Update a project")
async def update(project_id: str, body: ProjectUpdate, db: DbDep) -> ProjectOut:
    """Set fields; omitted ones stay. In ``configuration`` a null field removes it (null as a
    whole removes all); a null ``budget`` removes the budget.

    404 ``project_not_found`` for an unknown id.
    """
    patch = config_patch(body.configuration, "configuration" in body.model_fields_set)
    changes = body.changes("name", "working_directory") | body.budget_change()

    def write(session: Session) -> ProjectOut:
        return _out(session, update_project(session, project_id, changes, patch))

    return await db.run(write)


@router.delete("/projects/{project_id}", status_code=204, summary="Delete a project")
async def delete(project_id: str, db: DbDep) -> Response:
    """Delete an empty project (204); one that still has sessions answers 409 ``conflict``.

    404 ``project_not_found`` for an unknown id.
    """
    await db.run(delete_project, project_id)
    return Response(status_code=204)
