"""All runtime settings in one place: environment variables prefixed SEGSTREAM_."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "settings_table"]


class Settings(BaseSettings):
    """Settings of the worker and the Kafka-facing commands; read once, frozen."""

    model_config = SettingsConfigDict(env_prefix="SEGSTREAM_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port"
    )
    app_id: str = Field(default="segstream", description="Faust app id; also the consumer group")
    input_topic: str = Field(default="customer-signups", description="signup events in")
    output_topic: str = Field(default="customer-segments", description="assignments out")
    dlq_topic: str = Field(default="customer-signups.dlq", description="dead letters out")
    model_topic: str = Field(
        default="segmentation-models", description="compacted topic of published manifests"
    )
    model_name: str = Field(
        default="customer-segments", description="model name followed on the model topic"
    )
    topic_partitions: int = Field(default=4, ge=1, description="partitions of created topics")
    model_path: Path | None = Field(
        default=None,
        description="manifest.json, a model directory, or a models root (its LATEST is used)",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description="exactly_once: results and offsets commit in one transaction per partition",
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="consumer group session timeout"
    )
    batch_size: int = Field(default=500, ge=1, description="most events scored in one batch")
    batch_window_ms: int = Field(
        default=20, ge=1, description="longest wait to fill a batch, in milliseconds"
    )
    max_event_bytes: int = Field(
        default=65_536, ge=64, description="larger input values are dead-lettered"
    )
    echo_customer: bool = Field(
        default=False, description="copy age, income and gender into assignments (personal data)"
    )
    web_host: str = Field(default="127.0.0.1", description="address of the health endpoints")
    web_port: int = Field(default=6066, ge=0, le=65535, description="port of the health endpoints")
    data_dir: Path = Field(default=Path(".segstream"), description="Faust's local state folder")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="worker log level"
    )
    model_signing_key: SecretStr | None = Field(
        default=None, description="HMAC key; when set, only manifests signed with it are used"
    )

    @property
    def batch_window(self) -> float:
        """Batch window in seconds, as Faust takes it."""
        return self.batch_window_ms / 1000.0

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options shared by every aiokafka client segstream creates."""
        return {"bootstrap_servers": self.bootstrap_servers}

    @property
    def broker_url(self) -> str:
        """Faust broker URL list built from bootstrap_servers."""
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(",") if h)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def settings_table() -> str:
    """A Markdown table of every setting: variable, default and meaning (for the README)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "(none)" if default is None else f"`{default}`"
        rows.append(f"| `SEGSTREAM_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
