"""The backfill workers: the orchestrator, one chunk's transaction, the Kafka publishers."""
