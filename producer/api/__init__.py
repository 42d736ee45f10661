"""The backfill HTTP API (the seed's contract on port 5052) and its command-line client."""
