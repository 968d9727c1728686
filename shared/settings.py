"""Settings, read from ``BOBBIN_*`` environment variables through ``get_settings()``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOBBIN_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str = ""  # empty: SQLite file under data_dir
    redis_url: str = "redis://127.0.0.1:6379/0"
    secret_key: SecretStr | None = None
    bootstrap_api_key: SecretStr | None = None

    worker_concurrency: int = 100
    max_tool_rounds: int = 50
    turn_timeout_s: float = 900
    shutdown_timeout_s: float = 20
    max_queued_turns: int = 1000

    # Tool processes (bash): the sandbox's network, its process bound, and the opt-in to
    # run them unsandboxed where no sandbox can be made (shared/tools/sandbox.py).
    tool_network: bool = False
    tool_pids_max: int = Field(default=256, ge=8)
    tool_unsandboxed: bool = False
    # Internal hosts, addresses or networks (CIDR) url_fetch may reach, comma-separated.
    url_fetch_allow: str = ""

    lease_s: float = 30
    lease_renew_s: float = 10
    sweep_interval_s: float = 10
    max_attempts: int = 3

    api_url: str = "http://127.0.0.1:8000"
    api_key: SecretStr | None = None

    @field_validator("database_url")
    @classmethod
    def _driver_url(cls, url: str) -> str:
        """Accept ``sqlite:///PATH`` and ``postgresql://`` URLs, mapped to our drivers."""
        if url.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        if url == "" or url.startswith(("sqlite:///", "postgresql+psycopg://")):
            return url
        scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
        raise ValueError(
            f"Bobbin runs on SQLite (sqlite:///PATH) or PostgreSQL (postgresql://...), not {scheme}"
        )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'bobbin.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
