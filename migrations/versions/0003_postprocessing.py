"""Post-processing: camera calibrations, pipeline products and processing runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_STATUSES = ("running", "complete", "interrupted", "failed")
PRODUCT_KINDS = ("flow", "scene_colour", "blurred", "sharp", "mask")


def _in(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def upgrade() -> None:
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("camera_id", sa.Integer(), nullable=False),
        sa.Column("lightbox_frame_id", sa.Integer(), nullable=False),
        sa.Column("calibration_id", sa.String(length=64), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("pipeline_version", sa.String(length=32), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("cast_spread", sa.Float(), nullable=False),
        sa.Column("residual_rms_max", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calibrations")),
        sa.ForeignKeyConstraint(["camera_id"], ["cameras.id"], name=op.f("fk_calibrations_camera_id_cameras")),
        sa.ForeignKeyConstraint(
            ["lightbox_frame_id"], ["frames.id"], name=op.f("fk_calibrations_lightbox_frame_id_frames")
        ),
        sa.UniqueConstraint("camera_id", "params_hash", name=op.f("uq_calibrations_camera_id_params_hash")),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("pipeline_version", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], name=op.f("fk_products_scene_id_scenes")),
        sa.ForeignKeyConstraint(["capture_id"], ["captures.id"], name=op.f("fk_products_capture_id_captures")),
        sa.UniqueConstraint("kind", "params_hash", name=op.f("uq_products_kind_params_hash")),
        sa.CheckConstraint(f"kind IN ({_in(PRODUCT_KINDS)})", name=op.f("ck_products_product_kind")),
    )
    op.create_table(
        "processing_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scene_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("pipeline_version", sa.String(length=32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processing_runs")),
        sa.ForeignKeyConstraint(["scene_id"], ["scenes.id"], name=op.f("fk_processing_runs_scene_id_scenes")),
        sa.CheckConstraint(f"status IN ({_in(RUN_STATUSES)})", name=op.f("ck_processing_runs_run_status")),
    )
    with op.batch_alter_table("calibrations") as batch:
        batch.create_index(batch.f("ix_calibrations_camera_id"), ["camera_id"])
    with op.batch_alter_table("products") as batch:
        batch.create_index(batch.f("ix_products_scene_id"), ["scene_id"])
        batch.create_index(batch.f("ix_products_capture_id"), ["capture_id"])
    with op.batch_alter_table("processing_runs") as batch:
        batch.create_index(batch.f("ix_processing_runs_scene_id"), ["scene_id"])


def downgrade() -> None:
    with op.batch_alter_table("processing_runs") as batch:
        batch.drop_index(batch.f("ix_processing_runs_scene_id"))
    with op.batch_alter_table("products") as batch:
        batch.drop_index(batch.f("ix_products_capture_id"))
        batch.drop_index(batch.f("ix_products_scene_id"))
    with op.batch_alter_table("calibrations") as batch:
        batch.drop_index(batch.f("ix_calibrations_camera_id"))
    op.drop_table("processing_runs")
    op.drop_table("products")
    op.drop_table("calibrations")
