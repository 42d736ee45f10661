"""A request's outcomes rebuilt from the state topic after a restart: pure, unit-tested.

The checkpoints (``done:``) say which points hold which windows and how many points of each
chunk this request published; the ``failed:`` records say which points of which chunks failed;
the request record says how far a window reaching into the future was recorded
(``coveredUntil``). From them the chunk and point-chunk counts come back as they were, so a
restart never changes what the status reports.
"""

from __future__ import annotations

from datetime import datetime

from producer.planning.planner import Plan
from producer.state.checkpoints import StateView
from producer.state.progress import RequestProgress, Status
from shared.batch import to_micros


def _failures(view: StateView, request_id: str) -> dict[int, dict[str, str]]:
    """Per chunk index, the failed points of a request and their error."""
    out: dict[int, dict[str, str]] = {}
    for key, error in view.failures[request_id].items():
        index, point = key.split(":", 1)
        out.setdefault(int(index), {})[point] = str(error.get("error", ""))
    return out


def restore_outcomes(
    progress: RequestProgress, plan: Plan, view: StateView, status: Status
) -> None:
    """Fill ``progress``'s chunk and point-chunk outcomes from ``view``.

    A chunk whose points all hold its window is completed (skipped if this request published
    none of it). A chunk with points still lacking its window has no outcome unless the request
    is final: then its failed points failed and, unless it was cancelled, the others were cut at
    the read moment. A resumed request's chunk keeps the count of points it already published,
    so they count as its own when the chunk finishes.
    """
    request = progress.request
    connector = request.connector_type
    tally = view.tallies[request.request_id]
    covered = view.requests.get(request.request_id, {}).get("coveredUntil")
    cut_at = None if not isinstance(covered, str) else to_micros(_parse(covered))
    failures = _failures(view, request.request_id)
    for chunk in plan:
        pending = view.pending_points(connector, chunk.points, chunk.start_us, chunk.end_us)
        present = len(chunk.points) - len(pending)
        mine = min(tally.point_chunks.get(chunk.index, 0), present)
        if not pending:
            if chunk.index in tally.chunks:
                progress.completed.add(chunk.index)
                progress.points.record(chunk.points, skipped=present - mine)
            else:
                progress.chunk_skipped(chunk.index, chunk.points)
        elif status.final and status is not Status.CANCELLED:
            failed = {p: e for p, e in failures.get(chunk.index, {}).items() if p in pending}
            partial = [p for p in pending if p not in failed]
            progress.points.record(
                chunk.points,
                skipped=present - mine,
                failed=failed,
                partial=partial,
                chunk=chunk.index,
            )
            if failed:
                progress.failed.add(chunk.index)
            if partial:
                progress.chunk_cut(chunk.index, cut_at if cut_at is not None else chunk.start_us)
        elif mine:
            progress.earlier_commits[chunk.index] = mine


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)
