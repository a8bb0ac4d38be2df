"""``python -m bench report``: regenerate ``report/`` (tables, figures, REPORT.md) from the tidy
exports under ``results/``.

Same results in, byte-identical tables and REPORT.md out (sorted rows, fixed float formats,
no timestamps; figures carry no dates either). Results from different devices or meters are
never averaged together or drawn on one axis: every table row, claim and figure panel belongs
to one measurement slice (profile, dataset, device, meter), and REPORT.md says when several
exist.

The package, one job per module: ``load`` reads the exports, ``aggregate`` and ``select``
summarise and pick trials (fits in exact arithmetic, trials in one canonical order, so neither
the CPU nor the row order changes a byte), ``claims`` judges, ``figures`` holds the look every
figure shares and ``depth_figures``, ``score_figure``, ``cost_figures``, ``accuracy_figure`` and
``drift`` draw them, ``scope``, ``board``, ``tables``, ``gpu`` and ``stale`` write REPORT.md's
parts (the scope box and the verdict board first), ``build`` assembles ``report/``
(:func:`bench.report.build.build_report`) and ``command`` is the CLI.
This ``__init__`` imports nothing, so a module of the package may import its siblings as
``from bench.report import figures`` without an import circle.
"""
