"""The configuration model tree.

Every section is frozen and forbids unknown keys, so a typo in ``orion-etl.toml`` is an error
naming the key instead of a silently ignored setting. Defaults point at the local stack started
by ``scripts/stack.sh``. ``config/orion-etl.example.toml`` documents every key.
"""

from __future__ import annotations

from typing import Any, Literal

from psycopg.conninfo import make_conninfo
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orion_etl.config.dq import RuleSpec, TableSpecSettings, check_table_names

ENV_PREFIX = "ORION_ETL_"
ENV_NESTED_DELIMITER = "__"


class Section(BaseModel):
    """Base of every config section: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PostgresSettings(Section):
    """A PostgreSQL connection (libpq parameters)."""

    host: str = "127.0.0.1"
    port: int = Field(55432, ge=1, le=65535)
    dbname: str = "postgres"
    user: str = "postgres"
    password: SecretStr = SecretStr("orion-stack-pw")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout_s: int = Field(10, ge=1)
    application_name: str = "orion-etl"

    def conninfo(self, **overrides: str | int) -> str:
        """libpq connection string including the password (never log it)."""
        params: dict[str, str | int] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "password": self.password.get_secret_value(),
            "sslmode": self.sslmode,
            "connect_timeout": self.connect_timeout_s,
            "application_name": self.application_name,
        }
        params.update(overrides)
        return make_conninfo(**{k: str(v) for k, v in params.items()})

    def describe(self) -> str:
        """Where this connection points, safe to print."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


class SourceSettings(PostgresSettings):
    """The operational database captured by Debezium (and read by `dims sync`)."""

    dbname: str = "orion_source"
    schema_name: str = "public"


class WarehouseSettings(PostgresSettings):
    """The star-schema warehouse written by orion-etl."""

    dbname: str = "orion_warehouse"
    schema_name: str = "public"
    # How the stream loader COPYs rows: PostgreSQL's binary format (values in their own
    # representation, less server CPU per row) or CSV. A frame binary cannot carry exactly goes as
    # CSV either way (orion_etl/adapters/copy_data.py); "csv" is the escape hatch.
    copy_format: Literal["binary", "csv"] = "binary"


class KafkaSettings(Section):
    """Kafka client settings shared by the loader, DLQ tools and tests."""

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "orion-etl"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    # Extra librdkafka properties passed through verbatim (e.g. {"socket.keepalive.enable" = "true"}).
    extra: dict[str, str] = Field(default_factory=dict)

    def client_config(self) -> dict[str, str]:
        """librdkafka properties common to producers, consumers and admin clients."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(self.extra)
        return conf


class ConnectSettings(Section):
    """The Kafka Connect REST API."""

    url: str = "http://127.0.0.1:18083"
    timeout_s: float = Field(30.0, gt=0)
    username: str | None = None
    password: SecretStr | None = None


class CdcSettings(Section):
    """Debezium PostgreSQL connector and replication health (`orion-etl connectors` / `orion-etl cdc`).

    ``{env}`` in the name-like keys is replaced by the environment (``--env`` or ``env``);
    ``environments.<name>`` holds per-environment overrides of any key of this section, plus an
    optional ``source`` table overriding the ``[source]`` connection that `cdc prepare|status` use.
    """

    env: str = "dev"
    connector_name: str = "orion-cdc-{env}"
    topic_prefix: str = "orion-{env}"
    routed_topic_prefix: str = "cdc"
    tables: list[str] = Field(
        default_factory=lambda: [
            "trades",
            "orders",
            "positions",
            "clients",
            "instruments",
            "liquidity_providers",
        ]
    )
    publication_name: str = "orion_cdc_publication"
    # `cdc prepare` owns the publication, so Debezium only uses it ("disabled"); "filtered" lets
    # Debezium create/alter it itself (its user must then own the tables).
    publication_autocreate_mode: Literal["disabled", "filtered", "all_tables", "no_tables"] = "disabled"
    slot_name: str = "orion_cdc_slot"
    # How the Connect worker reaches the source database (defaults: the [source] section).
    database_hostname: str | None = None
    database_port: int | None = None
    database_dbname: str | None = None
    database_user: str | None = None
    database_password: SecretStr | None = None
    # A Kafka Connect config-provider reference used instead of an inline password,
    # e.g. "${env:ORION_CDC_PASSWORD}" or "${file:/etc/kafka/secrets.properties:cdc.password}".
    database_password_ref: str | None = None
    decimal_handling_mode: Literal["precise", "string", "double"] = "string"
    # "embedded": every record carries its Kafka Connect schema (~5 KB per trade change);
    # "none": JSON converters with schemas.enable=false (~1 KB), types come from the loader's own
    # contract; needs decimal_handling_mode = "string" (docs/cdc.md, "Envelope size").
    schemas: Literal["embedded", "none"] = "embedded"
    heartbeat_interval_ms: int = Field(10_000, ge=0)
    # Table (in the source schema) the connector's heartbeat.action.query upserts; "" disables it.
    heartbeat_table: str = "orion_cdc_heartbeat"
    # Debezium signal table (in the source schema, created and published by `cdc prepare`) through
    # which `cdc snapshot` requests incremental snapshots; "" disables signalling.
    signal_table: str = "orion_cdc_signal"
    snapshot_mode: str = "initial"
    # Tables that get REPLICA IDENTITY FULL from `cdc prepare` ("*": every captured table).
    replica_identity_full: list[str] = Field(default_factory=lambda: ["*"])
    # Extra Debezium/Connect connector properties, passed through verbatim (they win over generated ones).
    extra: dict[str, str] = Field(default_factory=dict)
    # Replication-slot health thresholds used by `cdc status`.
    warn_retained_wal_bytes: int = Field(256 * 1024**2, ge=0)
    max_retained_wal_bytes: int = Field(1024**3, ge=0)
    max_heartbeat_age_s: int = Field(300, ge=0)
    environments: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("environments")
    @classmethod
    def _known_override_keys(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        allowed = set(cls.model_fields) - {"env", "environments"}
        for name, overrides in value.items():
            for key in overrides:
                if key == "source":
                    SourceSettings.model_validate(overrides[key])
                elif key not in allowed:
                    raise ValueError(f"environments.{name}.{key}: unknown key")
            cls.model_validate({k: v for k, v in overrides.items() if k != "source"})
        return value


class TopicSettings(Section):
    """Topics consumed by `orion-etl stream`."""

    trades_cdc: str = "cdc.public.trades"
    orders_cdc: str = "cdc.public.orders"
    trade_events: str = "trade.executed"
    quote_events: str = "quote.received"
    positions_cdc: str = "cdc.public.positions"
    risk_events: str = "risk.snapshot"


class StreamSettings(Section):
    """The streaming loader."""

    group_id: str = "orion-etl-loader"
    topics: TopicSettings = Field(default_factory=TopicSettings)
    start_from: Literal["earliest", "latest"] = "earliest"
    # A batch closes on size, on the age of its oldest record (batch_max_ms: the latency target of
    # batching) or when the consumer has had nothing more for batch_linger_ms while the commit thread
    # has room (orion_etl.core.batching: small batches at low rates, large at high rates).
    batch_max_messages: int = Field(5000, ge=1)
    batch_max_ms: int = Field(250, ge=1)
    batch_linger_ms: int = Field(5, ge=0)
    dlq_suffix: str = ".dlq"
    quote_sample_every: int = Field(10, ge=1)
    quote_spread_change_bps: float = Field(5.0, ge=0)
    # --until-caught-up gives up waiting for a partition assignment after this long (keep it above
    # the consumer's session.timeout.ms: a crashed member holds up the group's rebalance that long).
    assignment_timeout_s: float = Field(60.0, gt=0)
    # Infrastructure failures retry the same batch with exponential backoff up to this pause.
    retry_max_backoff_s: float = Field(30.0, gt=0)
    # A natural id with no dimension row: "infer" creates an inferred member and loads the fact;
    # "dlq" dead-letters the record (class MISSING_DIMENSION) so `dlq replay` loads it later.
    missing_dimension: Literal["infer", "dlq"] = "infer"
    # A progress log line (messages, recent rate, lag per partition, latency) this often.
    progress_log_s: float = Field(30.0, gt=0)


class DlqSettings(Section):
    """Dead-letter tools (`orion-etl dlq`)."""

    # Consumer group under which `dlq replay` remembers the DLQ positions it has replayed
    # (etl_consumer_offsets); never the loader's group, so replays never move its positions.
    replay_group: str = "orion-etl-dlq-replay"
    # `dlq list` reads at most this many messages per DLQ topic for its breakdown (counts are exact).
    list_max_messages: int = Field(100_000, ge=1)
    # Dead letters per replay transaction.
    replay_batch_messages: int = Field(1000, ge=1)


class DimensionSettings(Section):
    """Which attributes of one dimension are SCD Type 2 (versioned) and which Type 1 (overwritten)."""

    scd2: list[str]
    scd1: list[str] = Field(default_factory=list)  # attributes in neither list are type 1 as well
    close_on_delete: bool = True


class DimsTopicSettings(Section):
    """Debezium topics carrying dimension changes (consumed by `dims sync --from-cdc`)."""

    client: str = "cdc.public.clients"
    instrument: str = "cdc.public.instruments"
    lp: str = "cdc.public.liquidity_providers"


class DimsSettings(Section):
    """Dimension sync (defaults are the story's).

    Attributes listed in neither `scd2` nor `scd1` (e.g. `client_code`) are treated as SCD1.
    """

    client: DimensionSettings = Field(
        default_factory=lambda: DimensionSettings(
            scd2=["segment", "region", "status", "client_type"], scd1=["client_name", "industry"]
        )
    )
    instrument: DimensionSettings = Field(
        default_factory=lambda: DimensionSettings(
            scd2=["asset_class", "instrument_type"],
            scd1=[
                "symbol",
                "name",
                "base_currency",
                "quote_currency",
                "exchange",
                "price_precision",
                "quantity_precision",
            ],
        )
    )
    lp: DimensionSettings = Field(
        default_factory=lambda: DimensionSettings(
            scd2=["tier", "lp_type", "is_active"], scd1=["lp_code", "lp_name", "region"]
        )
    )
    # Incremental reads take source rows with updated_at >= watermark - lookback_s, so that rows
    # written by transactions that committed after the previous run read them are not missed.
    lookback_s: int = Field(300, ge=0)
    cdc_group_id: str = "orion-etl-dims"
    cdc_topics: DimsTopicSettings = Field(default_factory=DimsTopicSettings)
    cdc_batch_max_messages: int = Field(5000, ge=1)
    cdc_idle_timeout_s: float = Field(2.0, gt=0)


FX_TIMEZONE, FX_CUTOFF = "America/New_York", "17:00"


class TradingDaySettings(Section):
    """When a trading day starts: UTC midnight by default; FX uses 17:00 America/New_York."""

    timezone: str = "UTC"
    cutoff: str = "00:00"
    # The FX week: trading days falling on Saturday/Sunday roll forward to Monday (Friday after the
    # cutoff and the weekend belong to Monday). None = on exactly for the FX convention
    # (America/New_York, 17:00), off otherwise; true/false decides explicitly.
    fx_week: bool | None = None

    @property
    def weekend_roll(self) -> bool:
        """Whether trading days on Saturday/Sunday roll forward to Monday (see `fx_week`)."""
        if self.fx_week is not None:
            return self.fx_week
        return self.timezone == FX_TIMEZONE and self.cutoff == FX_CUTOFF

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("cutoff")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("cutoff must be HH:MM (24h), e.g. '17:00'")
        return value


class AlertSettings(Section):
    """Where data-quality alerts go (see docs/data-quality.md)."""

    # Slack-compatible incoming webhook ({"text", "blocks"} JSON body); a secret, never printed.
    webhook_url: SecretStr | None = None
    log: bool = True
    # Total time of one webhook POST (connect + send + the whole answer), not per read.
    timeout_s: float = Field(10.0, gt=0)
    # Total time of the alert phase of one audit; alerts not sent by then are retried next audit.
    phase_timeout_s: float = Field(30.0, gt=0)
    # Alert on failing rules of at least this severity (recoveries follow the same filter).
    min_severity: Literal["warning", "error"] = "warning"
    # Put sample rows in webhook messages (off: samples may hold client data).
    include_samples: bool = False


class DqSettings(Section):
    """Data-quality rules and alerts."""

    rules_file: str | None = None
    # Ship the story's trade/order rules and the default audit rules (override them by table+name).
    include_defaults: bool = True
    rules: list[RuleSpec] = Field(default_factory=list)
    tables: dict[str, TableSpecSettings] = Field(default_factory=dict)
    sample_rows: int = Field(5, ge=0, le=100)
    statement_timeout_s: int = Field(600, ge=1)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("tables")
    @classmethod
    def _table_names(cls, value: dict[str, TableSpecSettings]) -> dict[str, TableSpecSettings]:
        return check_table_names(value)


class AggregateSettings(Section):
    """`orion-etl aggregate`: which dirty period buckets the intraday run recomputes."""

    # Periods whose dirty buckets `aggregate --intraday` recomputes. Quarterly/yearly marks stay
    # queued until a run includes them (e.g. a nightly `--intraday --periods all`).
    intraday_periods: list[Literal["DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", "YEARLY"]] = Field(
        default_factory=lambda: ["DAILY", "WEEKLY", "MONTHLY"]  # type: ignore[arg-type]
    )
    # Wait for a running aggregation instead of failing with exit 3 (lock held).
    wait_for_lock: bool = False


class LoggingSettings(Section):
    """Logging: rich on a terminal, JSON lines otherwise (`auto`)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "rich", "json", "plain"] = "auto"


class OrionSettings(BaseSettings):
    """The whole configuration. Environment variables override TOML:
    ``ORION_ETL_<SECTION>__<KEY>`` (e.g. ``ORION_ETL_WAREHOUSE__PASSWORD``)."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
    )

    source: SourceSettings = Field(default_factory=SourceSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    connect: ConnectSettings = Field(default_factory=ConnectSettings)
    cdc: CdcSettings = Field(default_factory=CdcSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    dlq: DlqSettings = Field(default_factory=DlqSettings)
    dims: DimsSettings = Field(default_factory=DimsSettings)
    trading_day: TradingDaySettings = Field(default_factory=TradingDaySettings)
    dq: DqSettings = Field(default_factory=DqSettings)
    aggregate: AggregateSettings = Field(default_factory=AggregateSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the TOML file, which the loader passes as init arguments.
        return (env_settings, init_settings)
