"""Tuning under a memory budget: a search-space file becomes an Optuna study whose trials are
pruned by the memory model before they run and by the pruner while they run. It runs through
the harness's study runner (:mod:`bench.harness.runner`) with a sampler, not the grid, choosing
its trials; what is tuning's own lives here.

Modules: ``params`` (one tuned setting and its distribution), ``settings`` (the ``[tune]``
table), ``space`` (the file: parsing, constraints, sampling), ``study`` (the options, the Optuna
study and what counts as finished), ``sampler`` (the runner's sampler strategy), ``objective``
(one trial), ``run`` (the runner with the sampler, after the budget check), ``results`` (export,
Pareto front, the best configuration as a command or spec), ``command`` (``python -m bench
tune``).
"""
