"""Rules declared in configuration: validation, merge with the defaults, rules files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from orion_etl.config import load_settings
from orion_etl.config.dq import build_catalog
from orion_etl.config.models import DqSettings, OrionSettings
from orion_etl.core.quality import DEFAULT_AUDIT_RULES, DEFAULT_RULES, RuleKind, Severity, fact_key_rules
from orion_etl.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "dq-rules.example.toml"


def catalog(rules: list[dict] | None = None, **dq: object):
    return build_catalog(DqSettings(rules=rules or [], **dq))  # type: ignore[arg-type]


def by_key(cat) -> dict:
    return {r.key: r for r in cat.rules}


def test_defaults_are_the_story_rules_plus_audit_rules() -> None:
    cat = catalog()
    assert [r.key for r in cat.rules] == [
        r.key for r in [*DEFAULT_RULES, *DEFAULT_AUDIT_RULES, *fact_key_rules()]
    ]
    assert "fact_trades.client_key_point_in_time" in by_key(cat)
    rules = by_key(cat)
    assert rules["fact_trades.tenant_required"].label == "[tenant_required] tenant_id is required"
    assert rules["fact_trades.client_exists"].kind is RuleKind.RELATIONSHIPS
    assert rules["fact_trades.trades_fresh"].kind is RuleKind.FRESHNESS
    assert cat.table("fact_trades").time_column == "trade_date"
    assert set(cat.origins.values()) == {"default"}


def test_new_rule_patch_replace_and_disable() -> None:
    cat = catalog(
        [
            {"table": "fact_trades", "name": "fees_non_negative", "severity": "ERROR"},
            {"table": "fact_trades", "name": "lp_exists", "enabled": False},
            {
                "table": "fact_trades",
                "name": "reasonable_price",
                "kind": "range",
                "column": "price",
                "min": 0,
                "max": 5,
                "inclusive_max": True,
                "message": "tiny prices only",
            },
            {
                "table": "fact_trades",
                "name": "notional_ok",
                "kind": "custom_sql",
                "sql": "t.notional_value <> t.quantity * t.price",
                "message": "bad notional",
                "severity": "warning",
            },
        ]
    )
    rules = by_key(cat)
    fees = rules["fact_trades.fees_non_negative"]
    assert fees.severity is Severity.ERROR and fees.message == "fees should be non-negative"
    assert not rules["fact_trades.lp_exists"].enabled
    assert "fact_trades.lp_exists" not in {r.key for r in cat.active}
    price = rules["fact_trades.reasonable_price"]
    assert (price.min, price.max, price.inclusive_max) == (Decimal(0), Decimal(5), True)
    assert rules["fact_trades.notional_ok"].severity is Severity.WARNING
    assert cat.origins["fact_trades.notional_ok"] == "config"
    assert cat.origins["fact_trades.tenant_required"] == "default"


def test_without_defaults() -> None:
    cat = catalog(
        [{"table": "t1", "name": "a", "kind": "not_null", "column": "c", "message": "m"}],
        include_defaults=False,
    )
    assert [r.key for r in cat.rules] == ["t1.a"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"kind": "unique", "message": "m"}, "rule fact_trades.r: columns (or column) is required"),
        ({"kind": "relationships", "column": "c", "message": "m"}, "to_table and to_column are required"),
        ({"kind": "freshness", "column": "c", "message": "m"}, "max_age_s is required"),
        ({"kind": "custom_sql", "message": "m"}, "sql is required"),
        ({"kind": "range", "column": "c", "message": "m"}, "min and/or max is required"),
        ({"kind": "not_null", "column": "c"}, "message is required"),
        ({"kind": "not_null", "column": "c; DROP TABLE x", "message": "m"}, "not a plain SQL identifier"),
        ({"kind": "custom_sql", "sql": "1=1; DROP TABLE x", "message": "m"}, "no ';'"),
        ({"kind": "not_null", "column": "c", "message": "m", "colour": "red"}, "colour"),
        ({"kind": "bogus", "message": "m"}, "kind"),
        ({"kind": "not_null", "column": "c", "message": "m", "severity": "fatal"}, "severity"),
    ],
)
def test_invalid_inline_rules_name_the_rule_and_key(tmp_path: Path, rule: dict, expected: str) -> None:
    import json

    body = "\n".join(
        f"{k} = {json.dumps(v)}" for k, v in {"table": "fact_trades", "name": "r", **rule}.items()
    )
    path = tmp_path / "orion-etl.toml"
    path.write_text(f"[[dq.rules]]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "dq.rules.0: " in info.value.message
    assert "rule fact_trades.r: " in info.value.message
    assert expected in info.value.message


def test_patch_of_unknown_rule_needs_kind() -> None:
    with pytest.raises(ConfigError, match=r"dq.rules: rule fact_trades.nope: kind is required"):
        catalog([{"table": "fact_trades", "name": "nope", "severity": "error"}])


def test_patch_that_breaks_a_rule_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"rule fact_trades.valid_side"):
        catalog([{"table": "fact_trades", "name": "valid_side", "values": []}])


def test_example_rules_file(tmp_path: Path) -> None:
    cat = build_catalog(DqSettings(rules_file=str(EXAMPLE)))
    rules = by_key(cat)
    assert rules["fact_trades.trades_fresh"].max_age_s == 21600
    assert not rules["fact_trades.lp_exists"].enabled
    assert rules["fact_trades.notional_matches"].kind is RuleKind.CUSTOM_SQL
    assert cat.origins["fact_trades.notional_matches"] == "file dq-rules.example.toml"
    assert cat.table("fact_orders").key_column == "order_id"


def test_rules_file_relative_to_config_dir_and_inline_wins(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(
        '[tables.fact_quotes]\ntime_column = "loaded_at"\n'
        '[[rules]]\ntable = "fact_trades"\nname = "fees_non_negative"\nseverity = "error"\n'
    )
    config = tmp_path / "orion-etl.toml"
    config.write_text(
        '[dq]\nrules_file = "rules.toml"\n'
        '[[dq.rules]]\ntable = "fact_trades"\nname = "fees_non_negative"\nenabled = false\n'
    )
    settings, _ = load_settings(config)
    cat = build_catalog(settings.dq, base_dir=tmp_path)
    fees = by_key(cat)["fact_trades.fees_non_negative"]
    assert fees.severity is Severity.ERROR and not fees.enabled
    assert cat.table("fact_quotes").time_column == "loaded_at"


def test_bad_rules_file_names_file_rule_and_key(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rules]]\ntable = "fact_trades"\nname = "x"\nkind = "range"\ncolumn = "price"\n'
        'message = "m"\nmaxx = 3\n'
    )
    with pytest.raises(ConfigError) as info:
        build_catalog(DqSettings(rules_file=str(path)))
    expected = f"{path}: rules.0: rule fact_trades.x: maxx: unknown key (did you mean 'max'?)"
    assert info.value.message == expected
    with pytest.raises(ConfigError, match="rules file not found"):
        build_catalog(DqSettings(rules_file=str(tmp_path / "missing.toml")))


def test_table_names_are_identifiers() -> None:
    with pytest.raises(ValueError, match="plain SQL identifier"):
        OrionSettings(dq={"tables": {"fact trades": {"time_column": "x"}}})
