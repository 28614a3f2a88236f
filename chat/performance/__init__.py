"""Optional: what keeps a crowded room smooth (skip this package on a first read; the app works without it).

`pacing.py` spreads the room's news to hundreds of tabs over several turns of the event loop, so sockets are served
in between; `gc_policy.py` keeps Python's full garbage collections, which stop everything, out of a streaming reply.
Each one's docstring gives the figures that made it worth having.
"""
