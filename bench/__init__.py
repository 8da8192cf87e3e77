"""Allocator and harness benchmarks; `python bench/run.py --help` is the entry point."""
