"""The CLI shows the API's refusals as the API wrote them, whatever the answer looks like."""

from __future__ import annotations

import httpx
import pytest
import typer
from rich.console import Console

from producer.api import cli
from producer.api.cli import fleet_table


def _client(response: httpx.Response) -> httpx.Client:
    return httpx.Client(
        base_url="http://producer", transport=httpx.MockTransport(lambda _: response)
    )


def test_a_refusal_prints_status_field_and_message_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 400 prints its status, field and message, square brackets and all (not read as
    markup), and exits 2."""
    message = "pointAddresses[1] '[bold]X' is a bare tag name and PI_DEFAULT_SERVER is not set"
    envelope = {"success": False, "error": {"field": "pointAddresses", "message": message}}
    with pytest.raises(typer.Exit) as caught:
        cli.call(_client(httpx.Response(400, json=envelope)), "POST", "/api/backfill/start", {})
    assert caught.value.exit_code == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert f"error 400 (pointAddresses): {message}" in printed


def test_an_answer_that_is_not_json_is_shown_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A proxy's plain-text 413 or 502 is printed as it came, exit 2, instead of a crash."""
    response = httpx.Response(413, text="Content Too Large")
    with pytest.raises(typer.Exit) as caught:
        cli.call(_client(response), "POST", "/api/backfill/start", {})
    assert caught.value.exit_code == 2
    assert "error 413: Content Too Large" in capsys.readouterr().out


def test_fleet_table_shows_which_member_holds_which_tasks() -> None:
    """``histfill backfill status`` lists each member's workers, partitions and tasks done."""
    fleet = {
        "instance": "m0",
        "members": {
            "m0": {"workers": {"m0.w0": [0, 3], "m0.w1": [1]}, "tasksDone": {"abcdef123": 7}},
            "m1": {"workers": {}, "tasksDone": {"abcdef123": 2}},
        },
    }
    console = Console(width=120, record=True)
    console.print(fleet_table(fleet))
    text = console.export_text()
    assert "m0.w0" in text
    assert "0,3" in text
    assert "abcdef12: 7" in text
    assert "abcdef12: 2" in text
    assert "answered by m0" in text
