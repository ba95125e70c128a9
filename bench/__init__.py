"""corps benchmarks: every runtime path measured next to raw nats-py doing the same work, in one run.

``python -m corps.bench --help``. See bench/README.md for the scenarios and targets.
"""
