"""Benchmarks that hold the real stack against its own floor; see ``bench/README.md``."""
