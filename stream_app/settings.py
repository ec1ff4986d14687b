"""All runtime settings in one place: environment variables prefixed SEGSTREAM_."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import socket
import ssl
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import ConfigurationError

if TYPE_CHECKING:
    from faust.auth import Credentials

__all__ = [
    "ENV_FILE",
    "Settings",
    "effective_settings_table",
    "get_settings",
    "settings_table",
    "unknown_variable_warnings",
]

#: Read from the working directory, below the environment and above the defaults.
ENV_FILE = ".env"
_PREFIX = "SEGSTREAM_"
# Variables of scripts/kafka-local, not of segstream itself: known, so never warned about.
_SCRIPT_VARIABLES = frozenset(
    {
        "SEGSTREAM_KAFKA_DIR",
        "SEGSTREAM_KAFKA_CACHE",
        "SEGSTREAM_KAFKA_START_TIMEOUT",
        "SEGSTREAM_KAFKA_JAVA_OPTS",
        "SEGSTREAM_KAFKA_SASL_PASSWORD",
    }
)
_MASK = "**********"

_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_SSL_PROTOCOLS = ("SSL", "SASL_SSL")
_SSL_FILES = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def _variable(name: str) -> str:
    return f"SEGSTREAM_{name.upper()}"


class _HideSaslTokens(logging.Filter):
    """Blank out SASL tokens in aiokafka's debug log of every request it sends.

    With PLAIN the token is the password itself: `SEGSTREAM_LOG_LEVEL=debug` would print it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(map(_is_sasl_token, record.args)):
            record.args = tuple(
                "<SASL token hidden>" if _is_sasl_token(arg) else arg for arg in record.args
            )
        return True


def _is_sasl_token(arg: object) -> bool:
    return type(arg).__name__.startswith("SaslAuthenticateRequest")


def _hide_sasl_tokens() -> None:
    """Install the filter on the logger aiokafka sends requests through, once per process."""
    logger = logging.getLogger("aiokafka.conn")
    if not any(isinstance(f, _HideSaslTokens) for f in logger.filters):
        logger.addFilter(_HideSaslTokens())


def _one_line(error: ValidationError) -> str:
    """Every problem of a ValidationError on one line, naming variables, never their values."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{_variable(where)}: {message}" if where else message)
    return "invalid settings: " + "; ".join(problems)


class Settings(BaseSettings):
    """Settings of the worker and the Kafka-facing commands; read once, frozen."""

    # hide_input_in_errors: a refused value may be a password; errors name the variable only.
    model_config = SettingsConfigDict(
        env_prefix=_PREFIX,
        env_file=ENV_FILE,
        frozen=True,
        extra="ignore",
        hide_input_in_errors=True,
    )

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated host:port"
    )
    app_id: str = Field(default="segstream", description="Faust app id; also the consumer group")
    input_topic: str = Field(default="customer-signups", description="signup events in")
    output_topic: str = Field(default="customer-segments", description="assignments out")
    dlq_topic: str = Field(default="customer-signups.dlq", description="dead letters out")
    state_topic: str = Field(
        default="customer-segments.current",
        description="compacted topic of each customer's current segment (key customer_id)",
    )
    changes_topic: str = Field(
        default="customer-segment-changes", description="SegmentChanged events out"
    )
    model_topic: str = Field(
        default="segmentation-models", description="compacted topic of published manifests"
    )
    model_name: str = Field(
        default="customer-segments", description="model name followed on the model topic"
    )
    topic_partitions: int = Field(default=4, ge=1, description="partitions of created topics")
    # -1 is what CreateTopics takes for "the broker's default.replication.factor" (KIP-464).
    topic_replication_factor: int = Field(
        default=-1,
        ge=-1,
        description="replicas of every topic segstream creates; -1: the broker's default",
    )
    topic_min_insync_replicas: int | None = Field(
        default=None,
        ge=1,
        description="min.insync.replicas of every topic segstream creates; unset: the broker's",
    )
    create_topics: bool = Field(
        default=False,
        description="let the worker create missing input, output and dead-letter topics",
    )
    connect_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds a command waits for Kafka to answer before giving up",
    )
    model_path: Path | None = Field(
        default=None,
        description="manifest.json, a model directory, or a models root (its LATEST is used)",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description=(
            "exactly_once: results, dead letters and offsets commit in one Kafka transaction"
        ),
    )
    commit_interval_ms: int = Field(
        default=100,
        ge=1,
        description="how often results and offsets commit (one transaction per interval)",
    )
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = Field(
        default="lz4",
        description="how the worker compresses the record batches it produces",
    )
    transaction_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="the broker aborts a transaction left open this long (a crashed worker's)",
    )
    stall_seconds: float = Field(
        default=30.0,
        gt=0,
        description="/ready turns 503 after this long without progress on a waiting backlog",
    )
    shutdown_timeout_ms: int = Field(
        default=5_000,
        ge=100,
        description="longest a stop waits for the batch in flight; then it is aborted",
    )
    dead_letter_max_bytes: int = Field(
        default=524_288,
        ge=4096,
        description="dead letters larger than this (or than the topic allows) are cut to fit",
    )
    worker_id: str | None = Field(
        default=None,
        description=("names this worker's transactional producer; default: an id kept in data_dir"),
    )
    customer_state: bool = Field(
        default=True,
        description=(
            "keep each customer's segment (RocksDB in data_dir + the state topic), accept "
            "profile updates and emit segment changes"
        ),
    )
    resegment_batch_size: int = Field(
        default=5000,
        ge=1,
        description="most customers re-scored between two batches when a new model goes live",
    )
    restore_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="longest a partition's state may take to restore before the worker gives up",
    )
    advertised_url: str | None = Field(
        default=None,
        description=(
            "URL other workers reach this worker's web port at, for customer lookups; default "
            "http://<web host, or this host's address when it is 0.0.0.0>:<web port>"
        ),
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="consumer group session timeout"
    )
    batch_size: int = Field(default=2000, ge=1, description="most events scored in one batch")
    # The window bounds the latency a quiet stream adds; a busy one fills batches sooner.
    batch_window_ms: int = Field(
        default=5, ge=1, description="longest wait to fill a batch, in milliseconds"
    )
    max_event_bytes: int = Field(
        default=65_536, ge=64, description="larger input values are dead-lettered"
    )
    echo_customer: bool = Field(
        default=False, description="copy age, income and gender into assignments (personal data)"
    )
    web_host: str = Field(default="127.0.0.1", description="address of the health endpoints")
    web_port: int = Field(
        default=6066,
        ge=0,
        le=65535,
        description="port of the health endpoints; 0: a free one, noted in DATA_DIR/web-port",
    )
    data_dir: Path = Field(default=Path(".segstream"), description="Faust's local state folder")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="worker log level"
    )
    model_signing_key: SecretStr | None = Field(
        default=None, description="HMAC key; when set, only manifests signed with it are used"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, for every Kafka connection",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN",
        description=(
            "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; PLAIN sends the password as is: use SASL_SSL"
        ),
    )
    sasl_username: str | None = Field(
        default=None, description="SASL user (SASL_PLAINTEXT, SASL_SSL)"
    )
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password; never logged or shown"
    )
    ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that signed the broker's certificate; default: system CAs",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="client certificate (PEM) for mutual TLS"
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="client private key (PEM), unless SEGSTREAM_SSL_CERTFILE holds it"
    )
    ssl_key_password: SecretStr | None = Field(
        default=None, description="password of an encrypted client key; never logged or shown"
    )
    ssl_check_hostname: bool = Field(
        default=True, description="check that the broker's certificate names the host connected to"
    )

    def __init__(self, **values: Any) -> None:
        """Read and check the settings; a ConfigurationError names every problem on one line."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # One readable line for the CLI; `from None` drops pydantic's multi-line report.
            raise ConfigurationError(_one_line(exc)) from None

    @field_validator("topic_replication_factor")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (the broker's default) or at least 1")
        return value

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        # sasl_ssl and scram-sha-256 mean the same; aiokafka and Faust want them in capitals.
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        protocol = self.security_protocol
        if protocol in _SASL_PROTOCOLS:
            missing = [
                _variable(name)
                for name in ("sasl_username", "sasl_password")
                if not _given(getattr(self, name))
            ]
            if missing:
                raise ValueError(
                    f"SEGSTREAM_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}"
                )
        else:
            # Credentials that would be silently ignored mean a connection without them.
            stray = [
                _variable(n) for n in ("sasl_username", "sasl_password") if _given(getattr(self, n))
            ]
            if stray:
                raise ValueError(
                    f"{' and '.join(stray)} set, but SEGSTREAM_SECURITY_PROTOCOL={protocol} does "
                    "not use SASL; use SASL_PLAINTEXT or SASL_SSL"
                )
        if protocol not in _SSL_PROTOCOLS:
            stray = [
                _variable(n) for n in (*_SSL_FILES, "ssl_key_password") if _given(getattr(self, n))
            ]
            if stray:
                raise ValueError(
                    f"{' and '.join(stray)} set, but SEGSTREAM_SECURITY_PROTOCOL={protocol} does "
                    "not use TLS; use SSL or SASL_SSL"
                )
        if (self.ssl_keyfile or self.ssl_key_password) and not self.ssl_certfile:
            raise ValueError(
                "SEGSTREAM_SSL_KEYFILE and SEGSTREAM_SSL_KEY_PASSWORD belong to a client "
                "certificate: set SEGSTREAM_SSL_CERTFILE too"
            )
        for name in _SSL_FILES:
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{_variable(name)}: no such file {path}")
        return self

    def web_url(self) -> str:
        """Where other workers reach this worker's web views (customer lookups)."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        host = self.web_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
            # Listening everywhere: the address the host name resolves to (a container's own
            # address under Docker, from its /etc/hosts), else the name itself.
            host = socket.gethostname()
            with contextlib.suppress(OSError):
                host = socket.gethostbyname(host)
        return f"http://{host}:{self.web_port}"

    @property
    def batch_window(self) -> float:
        """Batch window in seconds, as Faust takes it."""
        return self.batch_window_ms / 1000.0

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection options shared by every aiokafka client segstream creates."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in _SASL_PROTOCOLS:
            assert self.sasl_password is not None  # checked when the settings were read
            _hide_sasl_tokens()
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                # aiokafka takes the "plain" pair for the SCRAM mechanisms too.
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        if self.security_protocol in _SSL_PROTOCOLS:
            options["ssl_context"] = self.ssl_context()
        return options

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL and SASL_SSL, built from the ssl_* settings; else None."""
        if self.security_protocol not in _SSL_PROTOCOLS:
            return None
        from aiokafka.helpers import create_ssl_context

        key_password = self.ssl_key_password
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                # A callable: with no password OpenSSL would prompt on the terminal for one.
                password=lambda: key_password.get_secret_value() if key_password else "",
            )
        except (OSError, ValueError) as exc:
            # ssl.SSLError is an OSError; its text names the problem, never the password.
            raise ConfigurationError(
                "cannot set up TLS from SEGSTREAM_SSL_CAFILE, SEGSTREAM_SSL_CERTFILE and "
                f"SEGSTREAM_SSL_KEYFILE (is SEGSTREAM_SSL_KEY_PASSWORD right?): {exc}"
            ) from None
        context.check_hostname = self.ssl_check_hostname
        return context

    def broker_credentials(self) -> Credentials | None:
        """What Faust's `broker_credentials` takes for the same connection; None for PLAINTEXT."""
        import faust

        if self.security_protocol in _SASL_PROTOCOLS:
            assert self.sasl_password is not None  # checked when the settings were read
            _hide_sasl_tokens()
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return None

    def librdkafka_options(self) -> dict[str, Any]:
        """The same connection as kafka_client_options(), for librdkafka (confluent-kafka)."""
        options: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.security_protocol in _SASL_PROTOCOLS:
            assert self.sasl_password is not None  # checked when the settings were read
            options.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password.get_secret_value(),
                }
            )
        if self.security_protocol in _SSL_PROTOCOLS:
            for name, option in (
                ("ssl_cafile", "ssl.ca.location"),
                ("ssl_certfile", "ssl.certificate.location"),
                ("ssl_keyfile", "ssl.key.location"),
            ):
                path = getattr(self, name)
                if path is not None:
                    options[option] = str(path)
            if self.ssl_key_password is not None:
                options["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            options["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return options

    @property
    def broker_url(self) -> str:
        """Faust broker URL list built from bootstrap_servers."""
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(",") if h)


def _given(value: object) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


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
        rows.append(f"| `{_variable(name)}` | {shown} | {field.description} |")
    return "\n".join(rows)


def _env_file_values() -> dict[str, str]:
    """SEGSTREAM_ entries of the .env file in the working directory, names in capitals."""
    from dotenv import dotenv_values  # python-dotenv comes with pydantic-settings

    if not Path(ENV_FILE).is_file():
        return {}
    return {
        name.upper(): value
        for name, value in dotenv_values(ENV_FILE).items()
        if name.upper().startswith(_PREFIX) and value is not None
    }


def _environment() -> dict[str, str]:
    # pydantic-settings matches names case-insensitively; so does everything here.
    return {name.upper(): value for name, value in os.environ.items()}


def effective_settings_table(settings: Settings) -> str:
    """Every setting's value in effect and where it came from; secrets masked."""
    environment, env_file = _environment(), _env_file_values()
    rows = ["| variable | value | from |", "| --- | --- | --- |"]
    for name in Settings.model_fields:
        variable = _variable(name)
        value = getattr(settings, name)
        if variable in environment:
            source = "environment"
        elif variable in env_file:
            source = f"{ENV_FILE} file"
        else:
            source = "default"
        if value is None:
            shown = "(none)"
        elif isinstance(value, SecretStr):
            shown = _MASK
        else:
            shown = f"`{value}`"
        rows.append(f"| `{variable}` | {shown} | {source} |")
    return "\n".join(rows)


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per SEGSTREAM_ variable that is no setting, naming the closest one."""
    names = environ.keys() if environ is not None else [*_environment(), *_env_file_values()]
    known = {_variable(name) for name in Settings.model_fields}
    warnings = []
    for variable in sorted({name.upper() for name in names}):
        if not variable.startswith(_PREFIX) or variable in known | _SCRIPT_VARIABLES:
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " (segstream settings lists them)"
        warnings.append(f"{variable} is not a segstream setting and is ignored{hint}")
    return warnings
