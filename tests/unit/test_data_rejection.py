"""Which PostgreSQL errors belong to the data (isolate + dead-letter) and which do not (retry/stop)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from orion_etl.adapters.warehouse_loader import is_data_rejection

DATA = ["22001", "22003", "22008", "22021", "22P02", "22P05", "22032", "23502", "23503", "23505", "23514",
        "23P01", "54000"]  # fmt: skip
INFRA = ["08006", "08003", "57P01", "57014", "53100", "53200", "42501", "42P01", "42703", "40001", "40P01",
         "XX000", "25P02", "55P03"]  # fmt: skip


@pytest.mark.parametrize("state", DATA)
def test_data_states_are_isolated(state: str) -> None:
    assert is_data_rejection(errors.lookup(state)("refused"))


@pytest.mark.parametrize("state", INFRA)
def test_infrastructure_and_code_states_are_not(state: str) -> None:
    assert not is_data_rejection(errors.lookup(state)("down"))


def test_psycopg_refusing_a_value_itself_is_data() -> None:
    assert is_data_rejection(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert not is_data_rejection(psycopg.OperationalError("connection lost"))
    assert not is_data_rejection(ValueError("not a database error"))
