"""PI recorded values to columns: digital states, strings, quality flags, errors inside a 200."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from producer.sources.errors import PointReadError, ProtocolError
from producer.sources.pi_parse import parse_values, stream_error, web_exception
from shared.batch import Quality


def value(ts: str, v: Any, **flags: bool) -> dict[str, Any]:
    base = {"Good": True, "Questionable": False, "Substituted": False, "Annotated": False}
    return {"Timestamp": ts, "Value": v, **base, **flags}


def test_numbers_become_a_float_column_without_texts() -> None:
    """Plain numbers (ints included) keep their value; no texts are attached."""
    cols = parse_values([value("2024-01-01T00:00:00Z", 1.5), value("2024-01-01T00:01:00Z", 7)])
    assert cols.values.tolist() == [1.5, 7.0]
    assert cols.texts is None
    assert cols.quality.tolist() == [0, 0]


def test_quality_flags_map_to_bits() -> None:
    """Good=false, Questionable, Substituted and Annotated become the batch's quality bits."""
    cols = parse_values(
        [
            value("2024-01-01T00:00:00Z", 1.0, Good=False),
            value("2024-01-01T00:00:01Z", 1.0, Questionable=True, Substituted=True),
            value("2024-01-01T00:00:02Z", 1.0, Annotated=True),
        ]
    )
    assert cols.quality.tolist() == [
        Quality.BAD,
        Quality.QUESTIONABLE | Quality.SUBSTITUTED,
        Quality.ANNOTATED,
    ]


def test_digital_states_keep_their_code_and_name() -> None:
    """``{"Name","Value","IsSystem"}`` becomes the code as value and the name as text."""
    cols = parse_values(
        [
            value("2024-01-01T00:00:00Z", {"Name": "Active", "Value": 1, "IsSystem": False}),
            value("2024-01-01T00:01:00Z", 2.5),
        ]
    )
    assert cols.values.tolist() == [1.0, 2.5]
    assert cols.texts == ["Active", ""]


def test_system_states_are_not_readings() -> None:
    """A system state (``I/O Timeout``) keeps its name, is NaN, and is flagged."""
    state = {"Name": "I/O Timeout", "Value": 246, "IsSystem": True}
    cols = parse_values([value("2024-01-01T00:00:00Z", state, Good=False)])
    assert math.isnan(cols.values[0])
    assert cols.texts == ["I/O Timeout"]
    assert cols.quality[0] == Quality.BAD | Quality.SYSTEM_STATE


def test_strings_and_nulls() -> None:
    """String values are kept as text with NaN; a null value is NaN and bad."""
    cols = parse_values(
        [value("2024-01-01T00:00:00Z", "Batch-7"), value("2024-01-01T00:00:01Z", None)]
    )
    assert np.isnan(cols.values).all()
    assert cols.texts == ["Batch-7", ""]
    assert cols.quality.tolist() == [0, Quality.BAD]


def test_fields_left_out_take_their_defaults() -> None:
    """A value without quality fields is good (PI leaves them out when selectedFields says so)."""
    cols = parse_values([{"Timestamp": "2024-01-01T00:00:00Z", "Value": 3.0}])
    assert (cols.values.tolist(), cols.quality.tolist()) == ([3.0], [0])


def test_a_value_carrying_errors_fails_the_stream() -> None:
    """PI's handled errors inside a 200 are a failure for that point, with PI's message."""
    bad = value("2024-01-01T00:00:01Z", None)
    bad["Errors"] = [{"FieldName": "Value", "Message": ["Archive read failed."]}]
    with pytest.raises(PointReadError, match="Archive read failed"):
        parse_values([value("2024-01-01T00:00:00Z", 1.0), bad])


@pytest.mark.parametrize(
    "items", [{"Items": []}, [{"Value": 1.0}], [value("not a time", 1.0)], ["x"]]
)
def test_malformed_items_are_protocol_errors(items: Any) -> None:
    """Answers not shaped as recorded values are refused, not half-read."""
    with pytest.raises(ProtocolError):
        parse_values(items)


def test_web_exception_and_stream_errors_are_found() -> None:
    """A top-level WebException gives its status; stream ``Errors``/``Exception`` their text."""
    broken = {"WebException": {"StatusCode": 502, "Errors": ["stream broke"]}, "Items": []}
    assert web_exception(broken) == (502, "stream broke")
    assert web_exception({"Items": [], "WebException": None}) is None
    assert stream_error({"WebId": "x", "Items": [], "Errors": ["nope"]}) == "nope"
    assert stream_error({"WebId": "x", "Exception": {"Errors": ["gone"]}}) == "gone"
    assert stream_error({"WebId": "x", "Items": []}) is None
