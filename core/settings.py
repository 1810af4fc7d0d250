"""One settings object for the whole system, read from the environment (prefix ``RELOBLUR_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide configuration.

    Every field can be set with an environment variable ``RELOBLUR_<FIELD>`` (case-insensitive)
    or a ``.env`` file in the working directory.
    """

    model_config = SettingsConfigDict(env_prefix="RELOBLUR_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./var"), description="Root of the file store and the SQLite file.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default is SQLite at <data_dir>/reloblur.db. "
        "PostgreSQL: postgresql+psycopg://user@host:5432/db",
    )
    sql_echo: bool = Field(False, description="Log every SQL statement.")

    # ---- jobs (Dask distributed) ----
    dask_scheduler: str | None = Field(
        None,
        description="Address of a running Dask scheduler (tcp://host:8786); unset: an in-process "
        "LocalCluster is started.",
    )
    dask_workers: int = Field(2, ge=1, description="Worker processes of the LocalCluster.")
    dask_threads_per_worker: int = Field(1, ge=1, description="Threads per LocalCluster worker.")
    job_max_attempts: int = Field(3, ge=1, description="Starts of a job before it is failed.")

    # ---- the API service ----
    api_host: str = Field("127.0.0.1", description="Address `reloblur serve` binds to.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port `reloblur serve` binds to.")
    rigs_dir: Path = Field(Path("./configs/rigs"), description="Rig YAML files served by the API.")
    checkpoint: Path | None = Field(
        None, description="LBAG checkpoint the API loads at start for deblurring; unset: none."
    )
    device: str = Field("auto", description="Inference device: auto (CUDA, else CPU), cpu, cuda.")
    max_upload_mb: float = Field(64.0, gt=0, description="Largest upload accepted, in MiB.")
    preview_max_pixels: int = Field(
        1_000_000, gt=0, description="Largest image (pixels) deblurred synchronously."
    )
    max_image_pixels: int = Field(
        40_000_000,
        gt=0,
        description="Largest image (width × height, pixels) an upload may declare in its header; "
        "larger ones are refused before any pixel is decoded (decompression-bomb guard).",
    )
    exports_dir: Path | None = Field(
        None,
        description="Root under which API export jobs write (`out` is relative to it); unset: "
        "<data_dir>/exports. Never the data directory itself or one of its ancestors.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty: CORS closed."
    )
    event_stream_max_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="A server-sent event stream (GET /jobs/events) ends after this many seconds; "
        "browsers reconnect at once and resume with Last-Event-ID, losing no event.",
    )
    token_cache_s: float = Field(
        2.0,
        ge=0,
        description="Seconds a verified API token is trusted without asking the database again "
        "(0: every request asks). A token revoked by another process (the CLI, another API "
        "worker) stops working within this time; one revoked through this process at once.",
    )
    read_cache: bool = Field(
        True,
        description="Serve read endpoints from a cache that the database's change version keeps "
        "exact (SQLite: data_version; PostgreSQL: change notifications, migration 0005).",
    )
    access_log: bool = Field(
        False, description="uvicorn's access log in `reloblur serve` (a line per request, reads "
        "included); write requests are always logged (reloblur.audit)."
    )
    api_workers: int = Field(
        1, ge=1, description="HTTP worker processes of `reloblur serve` (the job runner is one)."
    )

    @property
    def resolved_exports_dir(self) -> Path:
        """Where API exports go: ``exports_dir``, or ``<data_dir>/exports``."""
        return self.exports_dir if self.exports_dir is not None else self.data_dir / "exports"

    @property
    def resolved_database_url(self) -> str:
        """The database URL in use: the configured one, or the SQLite file in ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'reloblur.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
