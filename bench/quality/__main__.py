"""``python -m bench.quality``."""

from bench.quality import main

main()
