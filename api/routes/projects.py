"""Projects: a working directory and the configuration their sessions inherit."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import DbDep, PageDep
from api.schemas import ProjectCreate, ProjectList, ProjectOut, ProjectUpdate, config_patch
from shared.sessions import (
    create_project,
    delete_project,
    get_project,
    list_projects,
    update_project,
)

router = APIRouter(tags=["projects"])


@router.post("/projects", status_code=201)
async def create(body: ProjectCreate, db: DbDep) -> ProjectOut:
    """``working_directory`` defaults to ``./data/workspaces/<project_id>`` on the workers."""
    configuration = body.configuration.model_dump(exclude_none=True) if body.configuration else {}
    project = await db.run(create_project, body.name, body.working_directory, configuration)
    return ProjectOut.of(project)


@router.get("/projects")
async def list_all(db: DbDep, page: PageDep) -> ProjectList:
    rows = await db.read(list_projects, page.cursor, page.fetch)
    rows, next_cursor = page.cut(rows, lambda row: row.id)
    return ProjectList(projects=[ProjectOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/projects/{project_id}")
async def get(project_id: str, db: DbDep) -> ProjectOut:
    return ProjectOut.of(await db.read(get_project, project_id))


@router.patch("/projects/{project_id}")
async def update(project_id: str, body: ProjectUpdate, db: DbDep) -> ProjectOut:
    """Set fields; in ``configuration`` a null field removes it (null as a whole removes all)."""
    patch = config_patch(body.configuration, "configuration" in body.model_fields_set)
    changes = body.changes("name", "working_directory")
    return ProjectOut.of(await db.run(update_project, project_id, changes, patch))


@router.delete("/projects/{project_id}", status_code=204)
async def delete(project_id: str, db: DbDep) -> Response:
    """Delete an empty project; one that still has sessions answers 409 ``conflict``."""
    await db.run(delete_project, project_id)
    return Response(status_code=204)
