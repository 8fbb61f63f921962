"""``python -m lupusbayes.cli``: the same as the ``lupusbayes`` command."""

from lupusbayes.cli import run

run()
