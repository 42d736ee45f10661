"""``histfill verify``: compares QuestDB with the historian, per point and chunk.

It reads the source and QuestDB and only writes ``verified:`` records to the state topic: it
is no part of producing, so it lives beside the producer, not inside it.
"""
