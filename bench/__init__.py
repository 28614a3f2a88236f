"""The benchmark: the real app in its own process, watched by hundreds of simulated tabs; `python -m bench.run`.

See docs/benchmarks.md for what it measures, how, and the latest figures.
"""
