"""``python -m sipua``: the same as the ``sipua`` command."""

from sipua.cli import main

main()
