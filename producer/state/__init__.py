"""Backfill state: the compacted state topic's records, the progress they add up to, restore."""
