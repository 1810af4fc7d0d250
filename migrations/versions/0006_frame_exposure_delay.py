"""Frames record when their exposure started: ``frames.exposure_delay_s``.

Seconds after camera B's exposure start (the pair's trigger) at which this frame's exposure
started: 0 for camera B, the sharp delay for camera S ((tL − tS)/2 with ``sharp_timing: centre``,
0 with ``start``). NULL where unknown: frames stored before this revision (captured with both
exposures starting together) or imported without it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("frames") as batch:
        batch.add_column(sa.Column("exposure_delay_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("frames") as batch:
        batch.drop_column("exposure_delay_s")
