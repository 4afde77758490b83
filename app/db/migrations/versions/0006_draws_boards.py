"""Winner draws (rounds and their picks) and the links of public results boards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "draws",
        sa.Column("id", ID, primary_key=True),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.String(64), nullable=False),
        sa.Column("seed", sa.Text()),
        sa.Column("seed_source", sa.String(16), nullable=False),
        sa.Column("seed_sha256", sa.String(64), nullable=False),
        sa.Column("winners", sa.Integer(), nullable=False),
        sa.Column("reserves", sa.Integer(), nullable=False),
        sa.Column("entries_count", sa.Integer()),
        sa.Column("entries_sha256", sa.String(64)),
        sa.Column("record", sa.Text()),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("committed_at", TS, nullable=False),
        sa.Column("drawn_at", TS),
        sa.UniqueConstraint("flow_id", "round", name="uq_draw_round"),
        sa.CheckConstraint("status IN ('committed', 'drawn')", name="ck_draw_status"),
        sa.CheckConstraint("round >= 1", name="ck_draw_round"),
    )
    op.create_table(
        "draw_picks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("draw_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("outbox_id", sa.BigInteger()),
        sa.UniqueConstraint("draw_id", "position", name="uq_pick_position"),
        sa.UniqueConstraint("draw_id", "entry_id", name="uq_pick_entry"),
        sa.CheckConstraint("role IN ('winner', 'reserve')", name="ck_pick_role"),
    )
    op.create_index("ix_pick_phone", "draw_picks", ["phone"])
    op.create_table(
        "board_links",
        sa.Column("id", ID, primary_key=True),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.Text()),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_by", sa.String(128)),
        sa.Column("revoked_at", TS),
        sa.UniqueConstraint("token_sha256", name="uq_board_token"),
    )
    op.create_index("ix_board_flow", "board_links", ["flow_id"])


def downgrade() -> None:
    op.drop_table("board_links")
    op.drop_table("draw_picks")
    op.drop_table("draws")
