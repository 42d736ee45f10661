"""Readiness turns on how long a sink has been failing; liveness only on the loop turning."""

from __future__ import annotations

from consumer.metrics import HealthState, Heartbeat, SinkHealth


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_fails_only_after_the_limit_and_recovers_on_the_next_success() -> None:
    """A sink failing for less than the limit keeps /ready up; past it /ready is down naming
    the sink, while /health stays up and says the same; a success clears it."""
    clock = _Clock()
    heartbeat, sinks = Heartbeat(clock=clock), SinkHealth(clock=clock)
    state = HealthState(heartbeat, sinks, joined=lambda: True, max_stuck_s=10)
    assert state.ready()[0]
    sinks.failed("redis")
    clock.now += 4
    sinks.failed("redis")  # a retry failing again does not restart the clock
    heartbeat.beat()
    ready, body = state.ready()
    assert ready
    assert body["stuck_sinks"] == [{"sink": "redis", "seconds": 4.0}]
    clock.now += 6
    heartbeat.beat()
    ready, body = state.ready()
    assert not ready
    assert body["reason"] == "sink redis failing for 10 s (limit 10 s)"
    live, health = state.live()
    assert live
    assert health["ready"] is False
    sinks.succeeded("redis")
    assert state.ready()[0]
    assert state.ready()[1]["stuck_sinks"] == []


def test_not_ready_before_joining_and_not_live_when_the_loop_stops() -> None:
    """No partitions yet: not ready; the loop silent past the heartbeat limit: not live."""
    clock = _Clock()
    joined = False
    state = HealthState(
        Heartbeat(max_silence_s=60, clock=clock), SinkHealth(clock=clock), lambda: joined, 60
    )
    assert state.ready()[0] is False
    assert "no partitions" in state.ready()[1]["reason"]
    joined = True
    assert state.ready()[0] is True
    clock.now += 61
    assert state.live()[0] is False
    assert state.ready()[0] is False


def test_a_consumer_holding_no_partitions_says_so_and_stays_ready() -> None:
    """During a rebalance (nothing held after joining) /ready stays 200, and its body says why
    the lag series are gone for the moment."""
    clock = _Clock()
    held = [3]
    state = HealthState(
        Heartbeat(clock=clock), SinkHealth(clock=clock), lambda: True, 60, held=lambda: held[0]
    )
    ready, body = state.ready()
    assert ready
    assert body["partitions_held"] == 3
    assert "note" not in body
    held[0] = 0
    ready, body = state.ready()
    assert ready
    assert body["partitions_held"] == 0
    assert "rebalance in progress" in body["note"]
