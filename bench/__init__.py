"""Bobbin's benchmarks: ``python -m bench [--smoke] [NAME ...]`` (see bench/README.md)."""
