"""flow control: model declarations and limits of instances, parked turns, budgets

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provider_instance") as batch:
        batch.add_column(sa.Column("models", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("limits", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("turn") as batch:
        batch.add_column(sa.Column("not_before", sa.Float(), nullable=True))
        batch.add_column(sa.Column("waiting", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("provider_attempts", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("project") as batch:
        batch.add_column(sa.Column("budget", sa.JSON(), nullable=True))
    with op.batch_alter_table("session") as batch:
        batch.add_column(sa.Column("budget", sa.JSON(), nullable=True))
    op.create_table(
        "budget_spend",
        sa.Column("scope_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("reserved_nanos", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope_id", "period"),
    )
    op.create_table(
        "budget_hold",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("scope_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("period", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("nanos", sa.BigInteger(), nullable=False),
        sa.Column("turn_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", "scope_id"),
    )
    op.create_index(op.f("ix_budget_hold_turn_id"), "budget_hold", ["turn_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_budget_hold_turn_id"), table_name="budget_hold")
    op.drop_table("budget_hold")
    op.drop_table("budget_spend")
    with op.batch_alter_table("session") as batch:
        batch.drop_column("budget")
    with op.batch_alter_table("project") as batch:
        batch.drop_column("budget")
    with op.batch_alter_table("turn") as batch:
        batch.drop_column("provider_attempts")
        batch.drop_column("waiting")
        batch.drop_column("not_before")
    with op.batch_alter_table("provider_instance") as batch:
        batch.drop_column("limits")
        batch.drop_column("models")
