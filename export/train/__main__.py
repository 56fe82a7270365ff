"""``python -m export.train``."""

from export.train.cli import main

main()
