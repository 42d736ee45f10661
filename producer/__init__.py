"""The backfill producer: historian history into Kafka, one transaction per chunk.

The flow, one subpackage per stage:

* :mod:`producer.api` — the HTTP API (port 5052), its status payloads and the ``histfill
  backfill`` client;
* :mod:`producer.planning` — a request validated and planned into chunks (pure);
* :mod:`producer.worker` — the orchestrator and the workers that read a chunk from a source
  and publish it with its checkpoint in one Kafka transaction;
* :mod:`producer.sources` — the historian clients (PI Web API, ACE IoT, simulator);
* :mod:`producer.state` — the compacted state topic: checkpoints, progress, restore at start;
* :mod:`producer.live` — live mode, current values to the real-time topic.
"""
