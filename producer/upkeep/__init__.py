"""Keeping history whole after the backfill: holes, re-pull, changes."""
