"""The ablation harness: specs become grid points, points become trials in a shared Optuna study,
records become tidy exports. Data flows spec -> queue -> worker -> storage -> export.

Modules: ``spec`` (the TOML format, grid expansion, stable point keys), ``preflight`` (what
points need, checked before anything is stored), ``queue`` (the study as a work queue),
``worker`` (claim, run, record), ``progress`` (bars, closing table, failure lines), ``sweep``
(``python -m bench ablate``), ``launch`` (SLURM / submitit jobs), ``storage`` (SQLite, RDB and
journal storages; records on trials), ``export`` (``python -m bench export``), ``reproduce``
(``python -m bench reproduce``), ``skipped`` (the studies it could not run here) and
``credentials`` (the storage's password kept out of output, command lines and job folders).
"""
