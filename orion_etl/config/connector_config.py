"""Render the Debezium 3.x PostgreSQL connector config from orion-etl settings (pure, no I/O).

Fixes the story's `createDebeziumConfig` (see shared/spec/REVIEW.md):

* ``topic.prefix`` instead of ``database.server.name`` (gone since Debezium 2.0);
* the RegexRouter gets the keys it actually reads, ``transforms.route.regex`` and
  ``transforms.route.replacement``; the regex is anchored on ``<topic.prefix>.<schema>.`` so that
  only table topics are routed (``<prefix>.public.trades`` -> ``cdc.public.trades``), never the
  heartbeat or transaction topics;
* the password can be a Kafka Connect config-provider reference (``${file:...}``/``${env:...}``),
  which Connect resolves at runtime and never stores or returns in clear; inline passwords are
  masked in everything orion-etl prints;
* a heartbeat (topic ``__debezium-heartbeat.<prefix>``) plus an action query that upserts one row
  of ``heartbeat_table`` per slot, so the slot advances even when the captured tables are idle and
  `cdc status` can measure the heartbeat age;
* a signal table (``signal.data.collection``, source channel) so that `cdc snapshot` can request
  incremental snapshots of captured tables (see core/snapshot_signal.py);
* ``decimal.handling.mode=string`` by default: NUMERIC money stays exact and readable in JSON
  (``precise`` gives base64 bytes in JSON, ``double`` loses precision);
* JSON converters with the Kafka Connect schema embedded in every record (``cdc.schemas =
  "embedded"``), or without it (``"none"``: ``schemas.enable=false`` on both converters, records
  about 5x smaller; the loader then types the values by its own contract, which is why
  `config.cdc_target` refuses a schemaless connector whose decimals or timestamps it could misread).
"""

from __future__ import annotations

from dataclasses import dataclass

from orion_etl.config.cdc_target import CdcTarget
from orion_etl.core.connectors import is_provider_ref

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
REGEX_ROUTER = "org.apache.kafka.connect.transforms.RegexRouter"


@dataclass(frozen=True)
class ConnectorSpec:
    """A rendered connector: its name, its full config and the secret values inside it."""

    name: str
    config: dict[str, str]
    secrets: tuple[str, ...] = ()

    @property
    def password_inline(self) -> bool:
        """True when the database password is in the config in clear (no provider reference)."""
        return not is_provider_ref(self.config.get("database.password", ""))


def java_regex_literal(text: str) -> str:
    """`text` as a Java regex literal (topic names only contain [A-Za-z0-9._-])."""
    return text.replace(".", r"\.")


def heartbeat_action_query(schema: str, table: str, slot: str) -> str:
    """The upsert Debezium runs on every heartbeat (names are validated plain identifiers)."""
    return (
        f'INSERT INTO "{schema}"."{table}" (slot_name, heartbeat_at) '
        f"VALUES ('{slot}', now()) "
        "ON CONFLICT (slot_name) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at"
    )


def render_connector(target: CdcTarget) -> ConnectorSpec:
    """The connector name and config for one environment."""
    cdc, source = target.cdc, target.source
    schema = source.schema_name
    secrets: list[str] = []
    if cdc.database_password_ref:
        password = cdc.database_password_ref
    else:
        secret = cdc.database_password or source.password
        password = secret.get_secret_value()
        secrets.append(password)
    schemas_enable = "true" if cdc.schemas == "embedded" else "false"
    config: dict[str, str] = {
        "name": cdc.connector_name,
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": cdc.database_hostname or source.host,
        "database.port": str(cdc.database_port or source.port),
        "database.user": target.database_user,
        "database.password": password,
        "database.dbname": cdc.database_dbname or source.dbname,
        "topic.prefix": cdc.topic_prefix,
        "plugin.name": "pgoutput",
        "publication.name": cdc.publication_name,
        "publication.autocreate.mode": cdc.publication_autocreate_mode,
        "slot.name": cdc.slot_name,
        "table.include.list": ",".join(f"{schema}.{t}" for t in target.captured_tables),
        "snapshot.mode": cdc.snapshot_mode,
        "decimal.handling.mode": cdc.decimal_handling_mode,
        "tombstones.on.delete": "true",
        "heartbeat.interval.ms": str(cdc.heartbeat_interval_ms),
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": schemas_enable,
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": schemas_enable,
        # Topics are created by Connect with the broker's defaults instead of relying on
        # auto.create.topics.enable (which production brokers usually disable).
        "topic.creation.default.replication.factor": "-1",
        "topic.creation.default.partitions": "-1",
        "transforms": "route",
        "transforms.route.type": REGEX_ROUTER,
        "transforms.route.regex": java_regex_literal(f"{cdc.topic_prefix}.{schema}.") + "(.*)",
        "transforms.route.replacement": f"{cdc.routed_topic_prefix}.{schema}.$1",
    }
    if cdc.heartbeat_table and cdc.heartbeat_interval_ms > 0:
        config["heartbeat.action.query"] = heartbeat_action_query(schema, cdc.heartbeat_table, cdc.slot_name)
    if cdc.signal_table:
        # The source channel: `cdc snapshot` inserts execute-snapshot / stop-snapshot rows into the
        # signal table, Debezium reads them from the WAL (the table is in the publication, not in
        # table.include.list) and writes its incremental-snapshot watermarks into the same table.
        config["signal.enabled.channels"] = "source"
        config["signal.data.collection"] = f"{schema}.{cdc.signal_table}"
    config.update(cdc.extra)
    config["name"] = cdc.connector_name
    return ConnectorSpec(name=cdc.connector_name, config=config, secrets=tuple(secrets))
