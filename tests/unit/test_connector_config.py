"""Rendering the Debezium connector config: routing keys, Debezium 3.x keys, secrets, environments."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orion_etl.config.cdc_target import resolve_target
from orion_etl.config.connector_config import render_connector
from orion_etl.config.models import OrionSettings
from orion_etl.core.connectors import MASK, is_provider_ref, mask_config
from orion_etl.errors import ConfigError


def settings(**cdc: Any) -> OrionSettings:
    return OrionSettings(source={"password": "src-secret-pw", "dbname": "ops"}, cdc=cdc)


def java_router(regex: str, replacement: str, topic: str) -> str:
    """What Kafka's RegexRouter does: full match, then replaceFirst ($1 -> \\1)."""
    if not re.fullmatch(regex, topic):
        return topic
    return re.sub(regex, replacement.replace("$", "\\"), topic, count=1)


def test_story_defects_are_fixed() -> None:
    config = render_connector(resolve_target(settings())).config
    assert "database.server.name" not in config
    assert "transforms.route.topic.replacement" not in config
    assert config["topic.prefix"] == "orion-dev"
    assert config["plugin.name"] == "pgoutput"
    assert config["transforms"] == "route"
    assert config["transforms.route.type"] == "org.apache.kafka.connect.transforms.RegexRouter"
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["table.include.list"] == (
        "public.trades,public.orders,public.positions,public.clients,public.instruments,public.liquidity_providers"
    )
    for key in ("key.converter.schemas.enable", "value.converter.schemas.enable", "tombstones.on.delete"):
        assert config[key] == "true"
    assert (
        config["key.converter"] == config["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
    )
    assert config["decimal.handling.mode"] == "string"
    assert config["publication.autocreate.mode"] == "disabled"
    assert config["database.dbname"] == "ops"
    assert all(isinstance(v, str) for v in config.values())


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("orion-dev.public.trades", "cdc.public.trades"),
        ("orion-dev.public.liquidity_providers", "cdc.public.liquidity_providers"),
        ("orion-devXpublic.trades", "orion-devXpublic.trades"),  # dots are literal
        ("__debezium-heartbeat.orion-dev", "__debezium-heartbeat.orion-dev"),  # not routed
        ("orion-dev.transaction", "orion-dev.transaction"),
        ("other.public.trades", "other.public.trades"),
    ],
)
def test_router_turns_prefixed_table_topics_into_routed_ones(topic: str, expected: str) -> None:
    config = render_connector(resolve_target(settings())).config
    routed = java_router(config["transforms.route.regex"], config["transforms.route.replacement"], topic)
    assert routed == expected


def test_router_follows_configured_prefixes() -> None:
    target = resolve_target(settings(routed_topic_prefix="cdcx", topic_prefix="pfx.{env}"))
    config = render_connector(target).config
    topic = "pfx.dev.public.orders"
    routed = java_router(config["transforms.route.regex"], config["transforms.route.replacement"], topic)
    assert routed == "cdcx.public.orders"


def test_inline_password_is_a_secret_and_masked() -> None:
    spec = render_connector(resolve_target(settings()))
    assert spec.config["database.password"] == "src-secret-pw"
    assert spec.password_inline
    assert spec.secrets == ("src-secret-pw",)
    masked = mask_config(spec.config)
    assert masked["database.password"] == MASK
    assert "src-secret-pw" not in repr(masked)


def test_cdc_password_wins_over_source_password() -> None:
    spec = render_connector(resolve_target(settings(database_password="cdc-only-pw", database_user="dbz")))
    assert spec.config["database.password"] == "cdc-only-pw"
    assert spec.config["database.user"] == "dbz"
    assert spec.secrets == ("cdc-only-pw",)


@pytest.mark.parametrize("ref", ["${env:ORION_CDC_PASSWORD}", "${file:/etc/kafka/s.properties:cdc.password}"])
def test_password_reference_is_passed_through_and_shown(ref: str) -> None:
    spec = render_connector(resolve_target(settings(database_password_ref=ref)))
    assert spec.config["database.password"] == ref
    assert not spec.password_inline
    assert spec.secrets == ()
    assert mask_config(spec.config)["database.password"] == ref
    assert "src-secret-pw" not in repr(spec.config)


@pytest.mark.parametrize("ref", ["plain-password", "${env}", "$env:X", "${file:/a:b"])
def test_bad_password_reference_is_a_config_error(ref: str) -> None:
    with pytest.raises(ConfigError, match="database_password_ref"):
        resolve_target(settings(database_password_ref=ref))


def test_empty_reference_from_environment_means_unset() -> None:
    spec = render_connector(resolve_target(settings(database_password_ref="")))
    assert spec.config["database.password"] == "src-secret-pw"


def test_mask_config_masks_secret_like_keys_but_not_references() -> None:
    config = {
        "database.password": "p1-secret",
        "database.sslpassword": "p2-secret",
        "some.api.key": "k-secret",
        "sasl.jaas.config": "jaas-secret",
        "other.password": "${env:X}",
        "database.user": "dbz",
    }
    masked = mask_config(config)
    assert masked == {
        "database.password": MASK,
        "database.sslpassword": MASK,
        "some.api.key": MASK,
        "sasl.jaas.config": MASK,
        "other.password": "${env:X}",
        "database.user": "dbz",
    }
    assert is_provider_ref("${file:/x:y}") and not is_provider_ref("x${env:A}")


def test_heartbeat_action_query_and_disable() -> None:
    config = render_connector(resolve_target(settings(heartbeat_interval_ms=2000))).config
    assert config["heartbeat.interval.ms"] == "2000"
    assert '"public"."orion_cdc_heartbeat"' in config["heartbeat.action.query"]
    assert "'orion_cdc_slot'" in config["heartbeat.action.query"]
    off = render_connector(resolve_target(settings(heartbeat_table=""))).config
    assert "heartbeat.action.query" not in off


def test_extra_properties_win_but_name_stays() -> None:
    config = render_connector(
        resolve_target(
            settings(extra={"time.precision.mode": "connect", "snapshot.mode": "no_data", "name": "x"})
        )
    ).config
    assert config["time.precision.mode"] == "connect"
    assert config["snapshot.mode"] == "no_data"
    assert config["name"] == "orion-cdc-dev"


def test_environment_substitution_and_overrides() -> None:
    s = settings(
        slot_name="orion_{env}",
        environments={
            "prod": {
                "topic_prefix": "orion-production",
                "database_hostname": "pg-prod",
                "max_retained_wal_bytes": 5,
                "source": {"host": "pg-prod.admin", "port": 6432},
            },
            "staging": {},
        },
    )
    prod = resolve_target(s, "prod")
    config = render_connector(prod).config
    assert config["name"] == "orion-cdc-prod"
    assert config["topic.prefix"] == "orion-production"
    assert config["slot.name"] == "orion_prod"
    assert config["database.hostname"] == "pg-prod"
    assert prod.cdc.max_retained_wal_bytes == 5
    assert (prod.source.host, prod.source.port) == ("pg-prod.admin", 6432)
    assert prod.source.password.get_secret_value() == "src-secret-pw"
    staging = resolve_target(s, "staging")
    assert render_connector(staging).config["topic.prefix"] == "orion-staging"
    assert staging.source.host == "127.0.0.1"
    assert resolve_target(s).env == "dev"  # cdc.env is always allowed


def test_unknown_environment_is_rejected_naming_the_known_ones() -> None:
    s = settings(environments={"prod": {}})
    with pytest.raises(ConfigError, match=r"unknown environment 'prdo'.* dev, prod"):
        resolve_target(s, "prdo")
    with pytest.raises(ConfigError, match=r"unknown environment 'prdo'.* are dev "):
        resolve_target(settings(), "prdo")  # no [cdc.environments]: only cdc.env is known
    assert resolve_target(settings(), "dev").env == "dev"


def test_unknown_override_key_fails_at_load() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"environments\.prod\.slot: unknown key"):
        settings(environments={"prod": {"slot": "x"}})


@pytest.mark.parametrize(
    ("cdc", "message"),
    [
        ({"slot_name": "Bad-Slot"}, "slot_name"),
        ({"topic_prefix": "has space"}, "topic_prefix"),
        ({"routed_topic_prefix": "cdc$1"}, "routed_topic_prefix"),
        ({"tables": []}, "tables"),
        ({"tables": ["trades; drop"]}, "tables"),
        ({"replica_identity_full": ["nope"]}, "replica_identity_full"),
    ],
)
def test_invalid_names_are_config_errors(cdc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_target(settings(**cdc))


def test_schemaless_connector_turns_both_converters_schemas_off() -> None:
    embedded = render_connector(resolve_target(settings())).config
    config = render_connector(resolve_target(settings(schemas="none"))).config
    assert config["key.converter.schemas.enable"] == config["value.converter.schemas.enable"] == "false"
    assert config["decimal.handling.mode"] == "string"
    changed = {k for k in config if config[k] != embedded.get(k)}
    assert changed == {"key.converter.schemas.enable", "value.converter.schemas.enable"}


def test_schemaless_per_environment() -> None:
    s = settings(environments={"prod": {"schemas": "none"}})
    assert render_connector(resolve_target(s, "prod")).config["value.converter.schemas.enable"] == "false"
    assert render_connector(resolve_target(s, "dev")).config["value.converter.schemas.enable"] == "true"


@pytest.mark.parametrize(
    ("cdc", "messages"),
    [
        ({"schemas": "none", "decimal_handling_mode": "precise"},
         ["cdc.decimal_handling_mode: must be 'string'"]),
        ({"schemas": "none", "decimal_handling_mode": "double"},
         ["cdc.decimal_handling_mode: must be 'string'"]),
        ({"schemas": "none", "extra": {"decimal.handling.mode": "precise"}},
         ["cdc.extra.decimal.handling.mode: must be 'string'"]),
        ({"schemas": "none", "extra": {"time.precision.mode": "connect"}},
         ["cdc.extra.time.precision.mode: 'connect'"]),
        ({"schemas": "none", "extra": {"value.converter.schemas.enable": "true"}},
         ["cdc.extra.value.converter.schemas.enable: contradicts schemas = 'none'"]),
        ({"extra": {"key.converter.schemas.enable": "false"}},
         ["cdc.extra.key.converter.schemas.enable: contradicts schemas = 'embedded'"]),
        ({"schemas": "none", "decimal_handling_mode": "precise", "slot_name": "Bad"},
         ["cdc.slot_name", "cdc.decimal_handling_mode"]),
    ],
)  # fmt: skip
def test_settings_a_schemaless_record_cannot_be_read_with_are_refused(
    cdc: dict[str, Any], messages: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_target(settings(**cdc))
    problems = "\n".join(caught.value.problems)
    for message in messages:
        assert message in problems


def test_settings_a_schemaless_record_can_be_read_with_pass() -> None:
    for extra in ({}, {"decimal.handling.mode": "string"},
                  {"time.precision.mode": "adaptive_time_microseconds"},
                  {"value.converter.schemas.enable": "false"}):  # fmt: skip
        resolve_target(settings(schemas="none", extra=extra))
    resolve_target(settings(decimal_handling_mode="precise"))  # embedded: the schema carries the scale


def test_schemaless_environment_inherits_a_precise_base_and_is_refused_under_its_name() -> None:
    s = settings(decimal_handling_mode="precise", environments={"prod": {"schemas": "none"}})
    resolve_target(s, "dev")
    with pytest.raises(ConfigError, match=r"cdc\.environments\.prod\.decimal_handling_mode"):
        resolve_target(s, "prod")
