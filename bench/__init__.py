"""Benchmarks of Kumo Edge. Each writes one JSON document (and a PNG where useful)."""
