"""Benchmark scripts: each times the library's public functions (the ones the CLI calls) and
writes a JSON result with the machine, sizes, versions and git commit. Run from the repository
root, e.g. ``python -m benchmarks.bench --help``."""
