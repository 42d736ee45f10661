"""Static instance ids: stable across a restart, distinct for consumers on one host."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.membership import claim_instance_id
from shared.errors import ConfigError


def test_consumers_on_one_host_take_distinct_slots_and_a_restart_reuses_its_own(
    tmp_path: Path,
) -> None:
    """The second consumer of a group takes the next slot; once the first exits, its slot is
    free again for the restarted process, so it comes back with the same id."""
    with claim_instance_id("g", None, host="box", lock_dir=tmp_path) as first:
        with claim_instance_id("g", None, host="box", lock_dir=tmp_path) as second:
            assert (first, second) == ("box-0", "box-1")
            with claim_instance_id("other-group", None, host="box", lock_dir=tmp_path) as other:
                assert other == "box-0"  # ids are per group
        with claim_instance_id("g", None, host="box", lock_dir=tmp_path) as again:
            assert again == "box-1"
    with claim_instance_id("g", None, host="box", lock_dir=tmp_path) as restarted:
        assert restarted == "box-0"


def test_a_configured_id_held_by_another_consumer_is_refused_naming_the_variable(
    tmp_path: Path,
) -> None:
    """Two members with one static id fence each other: refuse the second at start."""
    with claim_instance_id("g", "ingest-a", lock_dir=tmp_path) as held:
        assert held == "ingest-a"
        with (
            pytest.raises(ConfigError, match="CONSUMER_INSTANCE_ID"),
            claim_instance_id("g", "ingest-a", lock_dir=tmp_path),
        ):
            pass
