"""Tuning under a memory budget: a search-space file becomes an Optuna study whose trials are
pruned by the memory model before they run and by the pruner while they run.

Modules: ``params`` (one tuned setting and its distribution), ``settings`` (the ``[tune]``
table), ``space`` (the file: parsing, constraints, sampling), ``study`` (the Optuna study and
what counts as finished), ``objective`` (one trial), ``run`` (workers and jobs), ``results``
(export, Pareto front, the best configuration as a command or spec), ``command``
(``python -m bench tune``).
"""
