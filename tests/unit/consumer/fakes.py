"""Test doubles for the consume loop's collaborators (no broker, no QuestDB)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeMessage:
    """The few confluent_kafka.Message methods the loop uses."""

    t: str
    p: int
    o: int
    payload: bytes = b"0123456789"

    def topic(self) -> str:
        return self.t

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def value(self) -> bytes:
        return self.payload

    def error(self) -> None:
        return None


class NullCache:
    """A latest-value cache that takes every update and keeps nothing."""

    def update(self, _newest: list[object]) -> int:
        return 0
