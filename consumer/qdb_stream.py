"""One ILP/HTTP request whose body is streamed in chunks: one QuestDB transaction of any size.

The questdb client sends one in-memory buffer per request; QuestDB's ``/write`` also takes a
chunked body and commits it as one transaction when the body ends (or none of it, if the body
breaks off or a row is refused). The sink (:mod:`consumer.questdb_sink`) serialises the chunks
with the client's own buffers; this module only carries them and translates the answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from shared.errors import SinkError


class StreamRejectedError(Exception):
    """QuestDB answered a streamed flush with a refusal of its rows (HTTP 400)."""


class StreamWriter:
    """One ILP/HTTP request per flush, its body streamed in chunks (see the module docstring).

    The questdb client serialises the rows (its buffers speak the protocol version it
    negotiated with the server); httpx carries them, since the client sends one buffer per
    request. ``transport`` is injected by tests.
    """

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None,
        timeout_s: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            auth=auth,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )

    def post(self, chunks: Iterator[bytes]) -> None:
        """Send the chunks as one request: QuestDB's one transaction. Raises
        StreamRejectedError for a refusal of the rows, SinkError when QuestDB is unreachable
        or failing (nothing of the request is then committed)."""
        try:
            response = self._client.post("/write", content=chunks)
        except httpx.HTTPError as exc:
            raise SinkError(f"QuestDB write failed: {exc}") from exc
        if response.is_success:
            return
        text = response.text
        if response.status_code == 400 or '"code":"invalid"' in text:
            raise StreamRejectedError(text[:300])
        raise SinkError(f"QuestDB write failed: HTTP {response.status_code}: {text[:300]}")

    def close(self) -> None:
        self._client.close()
