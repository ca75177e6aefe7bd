"""The benchmark suite: scripts that measure (``bench_*.py``, each writing its figures as
JSON), the renderer of every generated page (:mod:`benchmarks.render`) and the one command
that runs them all and writes docs/benchmarks.md and docs/results.md (``run_all.py``).

Run a script from the repository root either as a file or as a module, with the same
options: ``python benchmarks/run_all.py --quick`` or ``python -m benchmarks.run_all --quick``.
See benchmarks/README.md.
"""
