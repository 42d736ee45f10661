"""The producer fleet: chunk tasks on a Kafka topic shared by any number of producer processes.

``PRODUCER_FLEET=true`` makes a producer a fleet member: :mod:`.coordinator` (the API's view of
the fleet), :mod:`.member` (the consume-transform-produce task workers), :mod:`.tailer` (every
member's copy of the state topic).
"""
