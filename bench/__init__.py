"""``make bench``: each benchmark against a baseline measured in the same run.

Every module of this package defines ``run() -> dict``; ``python -m bench [names]``
prints one JSON object per line: ``name``, the figure, the ``baseline`` it was compared
with (measured in the same process, same invocation), and ``ratio``. Figures are reported,
never asserted: the tests check behaviour, benchmarks report speed.
"""
