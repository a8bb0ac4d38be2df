"""``python -m bench bench``: the engines side by side on seeded synthetic graphs (memory, time,
parameters), each point in its own process, step-time ratios over rounds with intervals.

Modules: ``options`` (the command line and shared constants), ``graph`` (the measured graph),
``peer`` (PyG's ``GroupAddRev`` row), ``point`` (measuring one point; the method), ``plan``
(which points), ``ratios`` (headline ratios and verdicts), ``tables`` (printing), ``command``
(the run).
"""
