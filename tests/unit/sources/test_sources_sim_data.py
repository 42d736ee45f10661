"""The simulators' deterministic history: counts agree with what is generated, JSON is exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators import fixedjson as fj
from simulators.data import (
    SYSTEM_STATE_NAME,
    TagCatalog,
    TagKind,
    count_events,
    events,
    expected_count,
    web_id_to_name,
)

CATALOG = TagCatalog(interval_s=60, generated_tags=3)
DAY = datetime(2024, 1, 1, tzinfo=UTC)


def test_default_tags_and_generated_ones_are_known_case_insensitively() -> None:
    """The PI demo tags, the digital/string/multi tags and ``SIMTAGnnnnn`` resolve; others not."""
    assert CATALOG.names()[:3] == ["SINUSOID", "SINUSOIDU", "CDT158"]
    assert CATALOG.get("sinusoid") is CATALOG.get("SINUSOID")
    assert CATALOG.get("SIMTAG00002") is not None
    assert CATALOG.get("SIMTAG00003") is None
    assert CATALOG.get("NOPE") is None


def test_one_value_a_minute_by_default() -> None:
    """A day of a 1-minute tag holds 1440 values; the MULTI tag twice that (1+2+3 per 3 min)."""
    assert expected_count("SINUSOID", DAY, DAY + timedelta(days=1)) == 1440
    assert expected_count("MULTI.1", DAY, DAY + timedelta(days=1)) == 2880
    assert expected_count("SINUSOID", DAY, DAY + timedelta(days=365)) == 525_600


def test_interval_is_configurable() -> None:
    """A 1-second simulator serves 60 values a minute."""
    assert expected_count("CDT158", DAY, DAY + timedelta(minutes=1), interval_s=1) == 60


def test_unknown_tags_have_no_count() -> None:
    """Asking the count of an unknown tag is an error, not zero."""
    with pytest.raises(KeyError):
        CATALOG.expected_count("NOPE", DAY, DAY + timedelta(hours=1))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(TagCatalog(60, 3).names()),
    st.integers(-(10**10), 10**10),
    st.integers(0, 10**10),
)
def test_count_matches_what_is_generated(tag: str, start_us: int, length_us: int) -> None:
    """For any tag and window, ``count_events`` equals the events generated in ``[start, end)``."""
    spec = CATALOG.get(tag)
    assert spec is not None
    got = events(spec, start_us, start_us + length_us)
    assert len(got) == count_events(spec, start_us, start_us + length_us)
    assert ((got.timestamps_us >= start_us) & (got.timestamps_us < start_us + length_us)).all()
    assert (np.diff(got.timestamps_us) >= 0).all()


def test_limit_cuts_in_the_middle_of_a_shared_timestamp() -> None:
    """A limit can end inside a run of events that share one timestamp, as PI's maxCount does."""
    spec = CATALOG.get("MULTI.1")
    assert spec is not None
    page = events(spec, 0, 10**12, limit=4)  # indices 0,1,1,2 | 2,2,...
    assert page.timestamps_us.tolist() == [0, 60_000_000, 60_000_000, 120_000_000]


def test_digital_tag_has_states_and_system_states() -> None:
    """The digital tag cycles its states and every 50th event is the system state (NaN, bad)."""
    spec = CATALOG.get("BA:ACTIVE.1")
    assert spec is not None
    assert spec.kind is TagKind.DIGITAL
    page = events(spec, 0, 100 * 60_000_000)
    assert page.texts is not None
    assert page.is_system is not None
    assert set(page.texts) == {"Inactive", "Active", "Manual", SYSTEM_STATE_NAME}
    assert page.is_system.sum() == 2
    assert np.isnan(page.values[page.is_system]).all()


def test_web_ids_round_trip() -> None:
    """The WebIDs the simulator hands out lead back to their tag; foreign ones do not."""
    spec = CATALOG.get("BA:ACTIVE.1")
    assert spec is not None
    assert web_id_to_name(spec.web_id) == "BA:ACTIVE.1"
    assert web_id_to_name("F1DPxyz") is None


@given(st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=50), st.integers(0, 4))
def test_fixed_width_numbers_parse_back_exactly(ints: list[int], decimals: int) -> None:
    """Right-aligned numbers are valid JSON and parse to exactly ``int / 10**decimals``."""
    arr = np.array(ints, dtype=np.int64)
    n = len(arr)
    text = fj.rows([fj.literal("[", n), fj.number_block(arr, decimals), fj.literal("]", n)])
    parsed = json.loads(b"[" + text + b"]")
    assert [row[0] for row in parsed] == [i / 10**decimals for i in ints]


@given(st.lists(st.integers(-(10**15), 4 * 10**15), min_size=1, max_size=50))
def test_fixed_width_timestamps_match_iso_formatting(micros: list[int]) -> None:
    """Vectorised timestamps read the same as ``datetime.isoformat``."""
    got = fj.timestamp_strings(np.array(micros, dtype=np.int64))
    for text, us in zip(got, micros, strict=True):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
        assert datetime.fromisoformat(text) == moment


def test_strings_and_booleans_render_as_json() -> None:
    """Padded strings and booleans are valid JSON with the original values."""
    texts = ["a", "Batch-00001", ""]
    flags = np.array([True, False, True])
    n = 3
    text = fj.rows(
        [
            fj.literal('{"s":', n),
            fj.string_block(texts),
            fj.literal(',"b":', n),
            fj.bool_block(flags),
            fj.literal("}", n),
        ]
    )
    assert json.loads(b"[" + text + b"]") == [
        {"s": "a", "b": True},
        {"s": "Batch-00001", "b": False},
        {"s": "", "b": True},
    ]


def test_a_catalog_has_no_values_after_its_clock() -> None:
    """Like a historian, a catalog serves and counts events up to and including *now* and none
    after it; what lies before now is the same whatever the clock says."""
    now = DAY + timedelta(minutes=10)
    catalog = TagCatalog(60, clock=lambda: now)
    late = DAY + timedelta(hours=1)
    assert catalog.expected_count("SINUSOID", DAY, late) == 11  # 00:00 .. 00:10 inclusive
    assert catalog.until(2**62) == int(now.timestamp()) * 1_000_000 + 1
    before_now = TagCatalog(60, clock=lambda: late).expected_count("SINUSOID", DAY, now)
    assert before_now == 10
    assert expected_count("SINUSOID", DAY, late, clock=lambda: now) == 11
