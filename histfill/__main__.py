"""``python -m histfill``: the same as the ``histfill`` command."""

from histfill.cli import app

app()
