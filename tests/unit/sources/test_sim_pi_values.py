"""The values behind the PI simulator's interpolated, plot, value, end and descending recorded."""

from __future__ import annotations

import numpy as np

from simulators import pi_values as pv
from simulators.data import BAD, TagCatalog, events

CATALOG = TagCatalog(60, 0)
T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
MINUTE = 60_000_000


def _spec(tag: str):
    spec = CATALOG.get(tag)
    assert spec is not None
    return spec


def test_recorded_with_end_before_start_is_descending_from_start() -> None:
    """End before start: the newest first, a page cut at maxCount from the start side."""
    spec = _spec("SINUSOID")
    page = pv.recorded(spec, T0 + 10 * MINUTE, T0, 3)
    assert (page.timestamps_us - T0).tolist() == [10 * MINUTE, 9 * MINUTE, 8 * MINUTE]
    whole = pv.recorded(spec, T0 + 10 * MINUTE, T0, 1000)
    ascending = pv.recorded(spec, T0, T0 + 10 * MINUTE, 1000)
    assert whole.timestamps_us.tolist() == ascending.timestamps_us.tolist()[::-1]


def test_descending_pages_keep_every_event_of_a_shared_timestamp_in_order() -> None:
    """MULTI.1 holds several events per instant: descending is the exact reverse of ascending."""
    spec = _spec("MULTI.1")
    up = pv.recorded(spec, T0, T0 + 5 * MINUTE, 1000)
    down = pv.recorded(spec, T0 + 5 * MINUTE, T0, 1000)
    assert down.ints_e4.tolist() == up.ints_e4.tolist()[::-1]
    assert len(pv.recorded(spec, T0 + 5 * MINUTE, T0, 4)) == 4


def test_interpolation_is_linear_between_recorded_events() -> None:
    """Half way between two events of a continuous point is their mean; at one, its value."""
    spec = _spec("SINUSOID")
    raw = events(spec, T0, T0 + 2 * MINUTE)
    got = pv.interpolate(spec, np.array([T0, T0 + MINUTE // 2], dtype=np.int64))
    assert got.values[0] == raw.values[0]
    assert abs(got.values[1] - (raw.values[0] + raw.values[1]) / 2) <= 1e-4


def test_step_points_interpolate_to_the_previous_state() -> None:
    """A digital point between two events keeps the earlier state (no interpolation of text)."""
    spec = _spec("BA:ACTIVE.1")
    raw = events(spec, T0, T0 + 10 * MINUTE)
    times = raw.timestamps_us + MINUTE // 2
    got = pv.interpolate(spec, times)
    assert got.texts == raw.texts
    assert got.timestamps_us.tolist() == times.tolist()


def test_interpolated_covers_start_to_end_every_interval_and_descends_when_reversed() -> None:
    """One value per interval, end included; reversed times give the reversed answer."""
    spec = _spec("CDT158")
    up = pv.interpolated(spec, T0, T0 + 60 * MINUTE, 10 * MINUTE)
    down = pv.interpolated(spec, T0 + 60 * MINUTE, T0, 10 * MINUTE)
    assert len(up) == 7 == pv.interpolated_count(T0, T0 + 60 * MINUTE, 10 * MINUTE)
    assert down.ints_e4.tolist() == up.ints_e4.tolist()[::-1]


def test_plot_keeps_first_last_min_max_and_bad_values_per_interval() -> None:
    """At most five values an interval; the extremes and every interval's bad value are kept."""
    spec = _spec("BA:ACTIVE.1")  # every 50th event is a bad system state
    day = 24 * 60 * MINUTE
    raw = events(spec, T0, T0 + day + 1)
    got = pv.plot(spec, T0, T0 + day, 24)
    assert 0 < len(got) <= 24 * 5
    assert got.ints_e4.min() == raw.ints_e4.min()
    assert got.ints_e4.max() == raw.ints_e4.max()
    assert (got.quality & BAD).any()
    assert np.all(np.diff(got.timestamps_us) >= 0)


def test_value_at_or_before_is_the_last_event_of_that_instant() -> None:
    """The current value is the last event at or before the time, the last of a shared instant."""
    spec = _spec("MULTI.1")
    at = T0 + 7 * MINUTE + 5_000_000
    last = events(spec, T0 + 7 * MINUTE, T0 + 7 * MINUTE + 1)
    got = pv.at_or_before(spec, at)
    assert len(got) == 1
    assert got.ints_e4[0] == last.ints_e4[-1]
