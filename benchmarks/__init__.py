"""Benchmarks (not timed tests): real processes, real databases, numbers written as JSON.

``python -m benchmarks <name> [options] --out results.json``; each benchmark is a
module with ``add_arguments(parser)`` and ``run(args) -> dict``, registered in
:data:`benchmarks.__main__.BENCHMARKS`.
"""
