"""The PI simulator's WebID 2.0 path-only encoding and its PI time strings, without I/O."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from simulators import webid
from simulators.data import TagCatalog
from simulators.pi_time import PITimeError, parse_pi_time

# A Wednesday afternoon, fixed: every relative time below counts from it.
NOW = datetime(2024, 3, 13, 15, 30, 45, tzinfo=UTC)


def _spec_web_id(path: str, marker: str) -> str:
    """WebID 2.0, path-only, written from the PI Web API Reference's "WebID 2.0 Specification":
    type ``P``, version ``1``, the object marker, then base64url without padding of the UTF-8
    upper-case path without its leading ``\\\\``."""
    body = path.removeprefix("\\\\").upper().encode("utf-8")
    return "P1" + marker + base64.urlsafe_b64encode(body).decode().rstrip("=")


def test_point_web_ids_follow_the_path_only_specification() -> None:
    """``\\\\SERVER\\TAG`` encodes to P1DP + base64url(SERVER\\TAG), case-insensitively."""
    expected = _spec_web_id("\\\\SIMPI\\SINUSOID", "DP")
    assert webid.point_web_id("SIMPI", "SINUSOID") == expected
    assert webid.point_web_id("simpi", "sinusoid") == expected
    assert webid.encode_path("\\\\SIMPI\\SINUSOID", webid.POINT) == expected
    assert "=" not in webid.point_web_id("S", "BA:ACTIVE.1")


def test_data_server_web_ids_follow_the_specification() -> None:
    """A data server's WebID is P1DS + base64url(SERVER)."""
    assert webid.data_server_web_id("SimPI") == _spec_web_id("\\\\SIMPI", "DS")
    assert webid.decode_data_server(webid.data_server_web_id("SIMPI")) == "SIMPI"


def test_point_web_ids_decode_to_server_and_tag_and_older_ones_still_work() -> None:
    """New WebIDs decode to (server, tag); the earlier name-only ones to (None, tag)."""
    assert webid.decode_point(webid.point_web_id("SIMPI", "CDT158")) == ("SIMPI", "CDT158")
    legacy = TagCatalog().get("BA:ACTIVE.1")
    assert legacy is not None
    assert webid.decode_point(legacy.web_id) == (None, "BA:ACTIVE.1")
    assert webid.decode_point(webid.data_server_web_id("SIMPI")) is None
    assert webid.decode_point("F1DPxyz") is None
    assert webid.decode_point("P1DP!!!") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", NOW),
        ("", NOW),
        ("*-1d", datetime(2024, 3, 12, 15, 30, 45, tzinfo=UTC)),
        ("*+2h", datetime(2024, 3, 13, 17, 30, 45, tzinfo=UTC)),
        ("-1d", datetime(2024, 3, 12, 15, 30, 45, tzinfo=UTC)),
        ("t", datetime(2024, 3, 13, tzinfo=UTC)),
        ("today", datetime(2024, 3, 13, tzinfo=UTC)),
        ("y", datetime(2024, 3, 12, tzinfo=UTC)),
        ("Yesterday", datetime(2024, 3, 12, tzinfo=UTC)),
        ("t+8h", datetime(2024, 3, 13, 8, tzinfo=UTC)),
        ("y-1.5h", datetime(2024, 3, 11, 22, 30, tzinfo=UTC)),
        ("*-1mo", datetime(2024, 2, 13, 15, 30, 45, tzinfo=UTC)),
        ("*-2w", datetime(2024, 2, 28, 15, 30, 45, tzinfo=UTC)),
        ("mon", datetime(2024, 3, 11, tzinfo=UTC)),
        ("wednesday", datetime(2024, 3, 13, tzinfo=UTC)),
        ("5", datetime(2024, 3, 5, tzinfo=UTC)),
        ("08:00", datetime(2024, 3, 13, 8, tzinfo=UTC)),
        ("01-Jan-24 00:00:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("01-Jan-2024 06:30", datetime(2024, 1, 1, 6, 30, tzinfo=UTC)),
        ("2024-01-01", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("1/31/2024 8:00 PM", datetime(2024, 1, 31, 20, tzinfo=UTC)),
        ("'2024-01-01 00:00:00'", datetime(2024, 1, 1, tzinfo=UTC)),
        ("2024-01-01-1d", datetime(2023, 12, 31, tzinfo=UTC)),
    ],
)
def test_pi_time_strings(text: str, expected: datetime) -> None:
    """Absolute times in the common formats, ``*``, ``t``, ``y`` and intervals, as PI reads them."""
    assert parse_pi_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["garbage", "*-1.5d", "*-1q", "40", "2024-13-01"])
def test_what_is_not_a_pi_time_string_is_refused(text: str) -> None:
    """Unknown words, units, fractional days and impossible dates raise, naming the text."""
    with pytest.raises(PITimeError):
        parse_pi_time(text, NOW)
