"""What the fleet looks like, from the state topic alone (pure): who holds and who did what.

Any member answers from its own copy of the state topic, so ``histfill backfill status`` and
``/metrics`` show the same split of the work whichever member is asked.
"""

from __future__ import annotations

from typing import Any

from producer.state.checkpoints import StateView


def tasks_by_member(view: StateView) -> dict[str, dict[str, int]]:
    """Per request, how many of its tasks each member finished."""
    out: dict[str, dict[str, int]] = {}
    for request_id, tasks in view.tasks.items():
        counts: dict[str, int] = {}
        for task in tasks.values():
            member = str(task.get("member"))
            counts[member] = counts.get(member, 0) + 1
        if counts:
            out[request_id] = counts
    return out


def fleet_status(view: StateView, instance: str) -> dict[str, Any]:
    """``{"instance", "members": {member: {"workers": {worker: partitions}, "tasksDone":
    {request id: tasks}}}}``: the workers registered now and what every member did."""
    members: dict[str, Any] = {}
    for wid, record in sorted(view.members.items()):
        member = members.setdefault(str(record.get("member")), {"workers": {}})
        member["workers"][wid] = record.get("partitions", [])
    for request_id, counts in tasks_by_member(view).items():
        for member, n in counts.items():
            entry = members.setdefault(member, {"workers": {}})
            entry.setdefault("tasksDone", {})[request_id] = n
    return {"instance": instance, "members": members}
