"""Historian sources: stream points' history page by page as columnar batches.

The public surface: the :class:`Source` protocol and its items (:mod:`.base`), the three sources
(PI Web API, ACE IoT, the in-process simulator) with their frozen configs, and the errors.
"""

from producer.sources.ace_iot import AceIotConfig, AceIotSource
from producer.sources.base import PointComplete, PointFailure, Source, SourceItem, TimeWindow
from producer.sources.errors import (
    AuthError,
    BadRequest,
    PagingError,
    PointNotFound,
    PointReadError,
    ProtocolError,
    RateLimited,
    ServerError,
    SourceRequestError,
    TransportFailure,
)
from producer.sources.pi_web_api import PIPoint, PIWebApiConfig, PIWebApiSource
from producer.sources.ratelimit import SHARED_HOST_LIMITS, HostRateLimits, RateLimiter
from producer.sources.retry import RetryPolicy
from producer.sources.simulator import SimulatorConfig, SimulatorSource

__all__ = [
    "SHARED_HOST_LIMITS",
    "AceIotConfig",
    "AceIotSource",
    "AuthError",
    "BadRequest",
    "HostRateLimits",
    "PIPoint",
    "PIWebApiConfig",
    "PIWebApiSource",
    "PagingError",
    "PointComplete",
    "PointFailure",
    "PointNotFound",
    "PointReadError",
    "ProtocolError",
    "RateLimited",
    "RateLimiter",
    "RetryPolicy",
    "ServerError",
    "SimulatorConfig",
    "SimulatorSource",
    "Source",
    "SourceItem",
    "SourceRequestError",
    "TimeWindow",
    "TransportFailure",
]
