"""A schema'd topic read straight into pandas, Polars and DuckDB.

Goal: the promise of typed topics holds end to end: values appended as dicts to a
topic with an Avro or a JSON Schema come back from `read` as a typed struct column
`value` that pandas, Polars and DuckDB use as they are, with no decoding step, and
`read_key` returns the same typed column. Method: an embedded client over a temporary
directory; the DataFrame code is the code of docs/schemas.md, and each result is
compared with the sums computed from the appended dicts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek.client.embedded import EmbeddedClient

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")

PAYMENT_AVRO = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
PAYMENT_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "JPY"]},
        "note": {"type": ["string", "null"]},
    },
    "required": ["id", "amount", "currency"],
}
PAYMENTS = [
    {"id": "p-1", "amount": 12.5, "currency": "EUR", "note": "first"},
    {"id": "p-2", "amount": 7.0, "currency": "USD"},
    {"id": "p-3", "amount": 30.0, "currency": "EUR"},
    {"id": "p-4", "amount": 1000.0, "currency": "JPY", "note": None},
    {"id": "p-5", "amount": 2.5, "currency": "USD"},
]
EXPECTED_SUMS = {"EUR": 42.5, "USD": 9.5, "JPY": 1000.0}


@pytest.fixture(params=["avro", "json"])
def payments(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EmbeddedClient, pa.Table]]:
    """A topic `payments` with the five payments, and the table a read returns."""
    schema = PAYMENT_AVRO if request.param == "avro" else PAYMENT_JSON_SCHEMA
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("payments", schema=schema)
        client.append("payments", [{"key": payment["id"].encode(), "value": payment} for payment in PAYMENTS])
        table = pa.Table.from_batches(list(client.read("payments", start="earliest", wait=0)))
        yield client, table


def test_reads_return_a_typed_value_column(payments: tuple[EmbeddedClient, pa.Table]) -> None:
    client, table = payments
    value_type = table.schema.field("value").type
    assert pa.types.is_struct(value_type)
    assert {field.name: field.type for field in value_type} == {
        "id": pa.utf8(),
        "amount": pa.float64(),
        "currency": pa.utf8(),
        "note": pa.utf8(),
    }
    assert table.column("value").to_pylist() == [{"note": None, **payment} for payment in PAYMENTS]
    one_key = client.read_key("payments", b"p-3")
    assert one_key.column("value").to_pylist() == [{**PAYMENTS[2], "note": None}]


def test_pandas(payments: tuple[EmbeddedClient, pa.Table]) -> None:
    _, table = payments
    frame = table.flatten().to_pandas()
    assert list(frame["value.currency"]) == [payment["currency"] for payment in PAYMENTS]
    sums = frame.groupby("value.currency")["value.amount"].sum()
    assert sums.to_dict() == EXPECTED_SUMS
    nested = table.to_pandas()  # without flatten, each value is a dict
    assert nested["value"][0]["id"] == "p-1"


def test_polars(payments: tuple[EmbeddedClient, pa.Table]) -> None:
    _, table = payments
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    sums = (
        frame.unnest("value").group_by("currency").agg(pl.col("amount").sum().alias("total")).sort("currency")
    )
    assert dict(zip(sums["currency"].to_list(), sums["total"].to_list())) == EXPECTED_SUMS


def test_duckdb(payments: tuple[EmbeddedClient, pa.Table]) -> None:
    _, table = payments
    tbl = table  # DuckDB finds Arrow tables by their Python variable name
    rows: list[tuple[Any, ...]] = duckdb.sql(
        "select value.currency, sum(value.amount) from tbl group by 1 order by 1"
    ).fetchall()
    assert dict(rows) == EXPECTED_SUMS
    del tbl
