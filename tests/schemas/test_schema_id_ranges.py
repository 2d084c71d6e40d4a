"""Schema ids per cell (decision 0034): each engine hands out ids from its own range."""

from __future__ import annotations

import pytest

from odradek.cluster.keys import cell_of_schema_id, schema_id_base
from odradek.engine import Engine
from odradek.errors import InvalidRequest
from odradek.schemas import ids as schema_ids
from odradek.schemas.ids import SPAN, SchemaIds


def test_a_cells_ids_start_past_its_base_and_survive_a_reopen(tmp_path: object) -> None:
    directory = str(tmp_path)
    ids = SchemaIds(directory, base=2 * SPAN)
    first = ids.id_for("AVRO", '"string"')
    second = ids.id_for("AVRO", '"long"')
    assert (first, second) == (2 * SPAN + 1, 2 * SPAN + 2)
    assert ids.id_for("AVRO", '"string"') == first  # the same schema, the same id
    again = SchemaIds(directory, base=2 * SPAN)
    assert again.get(second) == ("AVRO", '"long"')
    assert again.id_for("AVRO", '"int"') == 2 * SPAN + 3


def test_ids_given_before_a_range_are_kept_and_new_ones_come_from_the_range(tmp_path: object) -> None:
    directory = str(tmp_path)
    old = SchemaIds(directory)  # a cell's ids from before ranges: 1, 2
    assert [old.id_for("AVRO", text) for text in ('"a"', '"b"')] == [1, 2]
    ranged = SchemaIds(directory, base=SPAN)
    assert ranged.id_for("AVRO", '"a"') == 1  # kept: it is named by what uses it
    assert ranged.id_for("AVRO", '"c"') == SPAN + 1


def test_a_full_range_is_refused_with_a_clear_error(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema_ids, "SPAN", 4)
    ids = SchemaIds(str(tmp_path), base=4)
    assert [ids.id_for("AVRO", f'"{n}"') for n in range(3)] == [5, 6, 7]
    with pytest.raises(InvalidRequest, match="no schema id left"):
        ids.id_for("AVRO", '"x"')
    assert ids.get(8) is None  # nothing half-done


@pytest.mark.parametrize("base", [-SPAN, 3, True, "0"])
def test_a_base_off_the_ranges_is_refused(tmp_path: object, base: object) -> None:
    with pytest.raises(InvalidRequest, match="multiple"):
        SchemaIds(str(tmp_path), base=base)  # type: ignore[arg-type]


def test_an_engine_hands_out_its_cells_ids(tmp_path: object) -> None:
    with Engine(str(tmp_path), schema_id_base=schema_id_base("_cell.5")) as engine:
        engine.create_topic(
            "orders", schema={"type": "record", "name": "O", "fields": [{"name": "id", "type": "long"}]}
        )
        info = engine.get_schema("orders")
        assert info is not None and info.id == 5 * SPAN + 1
        assert cell_of_schema_id(info.id, 6) == "_cell.5"


def test_the_cell_of_an_id() -> None:
    assert cell_of_schema_id(1, 3) == "_cell"
    assert cell_of_schema_id(SPAN - 1, 3) == "_cell"
    assert cell_of_schema_id(SPAN, 3) == "_cell.1"  # id SPAN is never handed out; its range's cell
    assert cell_of_schema_id(2 * SPAN + 7, 3) == "_cell.2"
    assert cell_of_schema_id(3 * SPAN + 1, 3) is None
    assert cell_of_schema_id(0, 3) is None
    assert cell_of_schema_id(-4, 3) is None
