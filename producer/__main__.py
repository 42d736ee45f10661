"""``python -m producer``: the backfill service (see :mod:`producer.main`)."""

from producer.main import main

main()
