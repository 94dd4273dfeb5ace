"""Migration files are well-formed and ordered (no database needed)."""

from __future__ import annotations

from orion_etl.adapters import migrations


def test_every_target_has_ordered_unique_versions() -> None:
    for target in migrations.TARGETS:
        found = migrations.discover(target)
        assert found, target
        versions = [m.version for m in found]
        assert versions == sorted(set(versions))


def test_advisory_key_is_stable_and_signed_64_bit() -> None:
    from orion_etl.adapters.postgres import advisory_key

    key = advisory_key("orion-etl:migrate:warehouse")
    assert key == advisory_key("orion-etl:migrate:warehouse")
    assert -(2**63) <= key < 2**63
    assert key != advisory_key("orion-etl:migrate:source")
