"""The fleet's split of the work, folded from state records alone."""

from __future__ import annotations

from producer.fleet.report import fleet_status, tasks_by_member
from producer.state import checkpoints as cp


def _view() -> cp.StateView:
    view = cp.StateView()
    for index, member in enumerate(["m0", "m0", "m1"]):
        record = {"kind": "task", "requestId": "r1", "chunkIndex": index, "member": member}
        view.apply(cp.task_key("r1", index), cp.encode(record))
    view.apply(cp.task_key("r1", 0), cp.encode({"requestId": "r1", "member": "m2"}))  # redone
    worker = {"member": "m0", "worker": "m0.w0", "partitions": [0, 2]}
    view.apply(cp.member_key("m0.w0"), cp.encode(worker))
    view.apply(cp.member_key("m9.w0"), cp.encode({"member": "m9", "worker": "m9.w0"}))
    view.apply(cp.member_key("m9.w0"), None)  # fenced and deleted by a survivor
    return view


def test_a_task_counts_once_for_the_member_that_finished_it_last() -> None:
    """A task redone by another member (its first run aborted) counts for the one that ran it."""
    assert tasks_by_member(_view()) == {"r1": {"m2": 1, "m0": 1, "m1": 1}}


def test_fleet_status_lists_live_workers_partitions_and_tasks() -> None:
    """Registered workers with their partitions; deleted workers are gone; tasks per member."""
    status = fleet_status(_view(), "m1")
    assert status["instance"] == "m1"
    assert status["members"]["m0"] == {"workers": {"m0.w0": [0, 2]}, "tasksDone": {"r1": 1}}
    assert "m9" not in status["members"]
    assert status["members"]["m2"] == {"workers": {}, "tasksDone": {"r1": 1}}
