"""featviz benchmarks: measure against the physical limit and the usual ways. Run ``python -m bench.run``.

Each module has one ``run(...)`` function returning a JSON-ready dict (``bench/README.md`` describes them):
:mod:`bench.extraction`, :mod:`bench.rendering`, :mod:`bench.browser`, :mod:`bench.memory`. Nothing here
asserts on timings; the numbers go to ``bench/results/latest.json`` and a Markdown table.
"""
