"""The connectors a request may name, built from the producer's settings on first use.

One source per connector is shared by every worker: its HTTP client pools connections and its
host rate budget is the historian's, not a worker's (nor, with ``SOURCE_RATE_LIMIT_SCOPE=fleet``,
a process's: see :mod:`producer.sources.fleet_ratelimit`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from producer.sources.ace_iot import AceIotConfig, AceIotSource
from producer.sources.base import Source
from producer.sources.fleet_ratelimit import host_rate_limits
from producer.sources.pi_web_api import PIWebApiConfig, PIWebApiSource
from producer.sources.simulator import SimulatorConfig, SimulatorSource, gap_micros, tag_of
from shared.settings import ProducerSettings

SourceFactory = Callable[[], Source]


class Connectors:
    """Sources by connector name; :meth:`unavailable` says why one cannot run here."""

    def __init__(
        self,
        factories: dict[str, SourceFactory],
        reasons: dict[str, str | None] | None = None,
    ) -> None:
        self._factories = factories
        self._reasons = dict(reasons or {})
        self._sources: dict[str, Source] = {}

    @classmethod
    def from_settings(cls, settings: ProducerSettings) -> Connectors:
        """PIWebApi and AceIot when their URLs are set; the Simulator always."""
        factories: dict[str, SourceFactory] = {
            "Simulator": lambda: SimulatorSource(
                SimulatorConfig(
                    interval_s=settings.simulator_interval_seconds,
                    generated_tags=settings.simulator_generated_tags,
                    gaps=gap_micros(settings.simulator_gaps),
                )
            )
        }
        reasons: dict[str, str | None] = {"Simulator": None}
        budgets = host_rate_limits(
            settings.source_rate_limit_scope,
            settings.redis_url.get_secret_value(),
            settings.source_rate_limit_key_prefix,
        )
        if settings.pi_web_api_url:
            url = settings.pi_web_api_url
            factories["PIWebApi"] = lambda: PIWebApiSource(
                PIWebApiConfig(
                    base_url=url,
                    username=settings.pi_username,
                    password=settings.pi_password,
                    bearer_token=settings.pi_bearer_token,
                    verify_tls=settings.pi_verify_tls,
                    ca_bundle=settings.pi_ca_bundle,
                    max_count=settings.pi_max_count,
                    points_per_request=settings.points_per_request,
                    max_requests_per_second=settings.source_max_requests_per_second,
                    default_server=settings.pi_default_server,
                ),
                rate_limits=budgets,
            )
            reasons["PIWebApi"] = None
        else:
            reasons["PIWebApi"] = "set PI_WEB_API_URL to the PI Web API base URL"
        if settings.ace_api_url and settings.ace_api_key:
            ace_url, key = settings.ace_api_url, settings.ace_api_key
            factories["AceIot"] = lambda: AceIotSource(
                AceIotConfig(
                    base_url=ace_url,
                    api_key=key,
                    max_requests_per_second=settings.source_max_requests_per_second,
                ),
                rate_limits=budgets,
            )
            reasons["AceIot"] = None
        else:
            reasons["AceIot"] = "set ACE_API_URL and ACE_API_KEY"
        return cls(factories, reasons)

    def unavailable(self) -> dict[str, str | None]:
        """Each known connector's reason it cannot run (``None``: it can)."""
        return dict.fromkeys(self._factories) | {
            k: v for k, v in self._reasons.items() if k not in self._factories
        }

    def get(self, name: str) -> Source:
        """The shared source of a connector (``KeyError`` if it is not available)."""
        source = self._sources.get(name)
        if source is None:
            source = self._sources[name] = self._factories[name]()
        return source

    def exact_count(self, name: str, point: str, start: datetime, end: datetime) -> int | None:
        """The exact number of values, when the source can know it without reading (simulator)."""
        if name not in self._factories:
            return None
        source = self.get(name)
        if isinstance(source, SimulatorSource):
            try:
                return source.catalog.expected_count(tag_of(point), start, end)
            except KeyError:
                return 0
        return None

    async def aclose(self) -> None:
        """Close every source that was opened."""
        for source in self._sources.values():
            await source.aclose()
        self._sources.clear()
