"""``python -m kumo_edge.cli``."""

from . import main

main()
