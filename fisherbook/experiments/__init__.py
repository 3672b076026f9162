r"""Experiment harnesses that the chapters and ``benchmarks/`` share. **Not public API.**

These helpers (model constructors, training loops, sweeps) exist so a chapter and a benchmark
run the same experiment; their signatures may change without notice and they are not
re-exported from :mod:`fisherbook`. Nothing in the rest of the package imports from here.

- :mod:`~fisherbook.experiments.kfac`: the K-FAC chapter's networks, full-batch training loop and
  Kronecker-factor comparison.
"""
