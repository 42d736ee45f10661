"""glibc heap tuning: applied through mallopt on glibc, and never over the user's own settings."""

from __future__ import annotations

import platform

import pytest

from shared.malloc import tune_malloc

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_tune_malloc_applies_both_settings() -> None:
    """On glibc both mallopt calls are accepted and reported."""
    assert tune_malloc(mmap_threshold=512 * 1024, arena_max=4) == {
        "mmap_threshold": 512 * 1024,
        "arena_max": 4,
    }


@glibc
def test_tune_malloc_leaves_settings_the_user_gave_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """MALLOC_ARENA_MAX in the environment was read by glibc at startup: it wins."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert tune_malloc() == {"mmap_threshold": 256 * 1024}
