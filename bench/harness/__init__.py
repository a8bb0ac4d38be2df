"""The study harness: specs become grid points, a study runner runs trials in a shared Optuna
study, records become tidy exports. Data flows spec -> source -> runner -> worker -> storage ->
export.

Modules: ``spec`` (the TOML format, grid expansion, stable point keys), ``preflight`` (what
points need, checked before anything is stored), ``source`` (the protocol a way of choosing
trials implements), ``runner`` (the one study runner: open, reconcile, workers here, in
processes or as jobs, progress, result), ``queue`` (the grid strategy: the study as a work
queue), ``worker`` (the one worker loop, heartbeats, one thread per CPU trial), ``progress``
(bars, failure lines, rerun commands, the grid's closing table), ``sweep`` (``python -m bench
ablate``), ``launch`` (SLURM / submitit jobs), ``storage`` (SQLite, RDB and journal storages;
records on trials), ``artifacts`` (each record as a file the dashboard opens), ``export``
(``python -m bench export``), ``reproduce`` (``python -m bench reproduce``), ``skipped`` (the
studies it could not run here) and ``credentials`` (the storage's password kept out of
output, command lines and job folders). The tuner's sampler
(:mod:`bench.tuning.sampler`) is the runner's other strategy.
"""
