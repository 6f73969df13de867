"""Benchmarks of the gateway against a bare client making the same backend calls (see ``bench/README.md``)."""
