"""From a backfill request to its chunks: validation, chunk sizes, the time-major plan (pure)."""
