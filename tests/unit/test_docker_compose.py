"""config/docker-compose.yml is a valid Compose file (compose-spec JSON schema, vendored in
tests/fixtures/compose-spec) whose services wait for each other's health, and
config/orion-etl.compose.toml makes the connector reach PostgreSQL from inside the Connect
container. There is no Docker engine in CI, so this is as far as it can be checked here.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orion_etl.config.cdc_target import resolve_target
from orion_etl.config.connector_config import render_connector
from orion_etl.config.loader import load_settings
from orion_etl.config.models import OrionSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "config" / "docker-compose.yml"
PROFILE = ROOT / "config" / "orion-etl.compose.toml"
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "compose-spec" / "compose-spec.json").read_text())


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def _published(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port."""
    pairs = (str(p).split(":")[-2:] for p in service.get("ports", []))
    return {int(host): int(container) for host, container in pairs}


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    assert _errors(_compose()) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["connect"]["depends_on"]["kafka"].update(condition="when_ready"),
        lambda c: c["services"]["postgres"]["healthcheck"].update(interval=2),
        lambda c: c["services"]["kafka"].update(ports="19092:19092"),
        lambda c: c["services"]["postgres"].update(restart_policy="always"),
    ],
    ids=["bad-condition", "interval-not-a-duration", "ports-not-a-list", "unknown-key"],
)
def test_the_schema_rejects_broken_files(mutate: Any) -> None:
    broken = copy.deepcopy(_compose())
    mutate(broken)
    assert _errors(broken), "the vendored schema must catch this"


def test_services_are_healthchecked_and_wait_for_healthy_dependencies() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    depends = services["connect"]["depends_on"]
    assert depends == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    connect_probe = " ".join(services["connect"]["healthcheck"]["test"])
    assert "io.debezium.connector.postgresql.PostgresConnector" in connect_probe


def test_published_ports_are_the_defaults_orion_etl_uses() -> None:
    services = _compose()["services"]
    defaults = OrionSettings()
    assert defaults.warehouse.port in _published(services["postgres"])
    assert defaults.source.port in _published(services["postgres"])
    assert int(defaults.kafka.bootstrap_servers.rsplit(":", 1)[1]) in _published(services["kafka"])
    assert int(defaults.connect.url.rsplit(":", 1)[1]) in _published(services["connect"])
    initdb = (ROOT / "config" / "docker-initdb.sql").read_text()
    for db in (defaults.source.dbname, defaults.warehouse.dbname):
        assert f"CREATE DATABASE {db};" in initdb
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert defaults.kafka.bootstrap_servers in advertised  # what a client on the host is told


def test_compose_profile_points_the_connector_at_the_postgres_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in [v for v in os.environ if v.upper().startswith("ORION_ETL_")]:
        monkeypatch.delenv(var)
    settings, _ = load_settings(PROFILE)
    config = render_connector(resolve_target(settings)).config
    services = _compose()["services"]
    host, port = config["database.hostname"], int(config["database.port"])
    assert host in services, f"{host} is not a compose service"
    assert port in _published(services[host]).values(), "the container port, not the host port"
    # the password is resolved inside the Connect container from its environment
    ref = re.fullmatch(r"\$\{env:([A-Z_]+)\}", config["database.password"])
    assert ref, config["database.password"]
    connect_env = services["connect"]["environment"]
    assert ref.group(1) in connect_env
    assert "env" in connect_env["CONNECT_CONFIG_PROVIDERS"].split(",")
    assert connect_env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"].endswith("EnvVarConfigProvider")
    # orion-etl itself still talks to the published ports on the host
    assert (settings.source.host, settings.source.port) == ("127.0.0.1", 55432)
