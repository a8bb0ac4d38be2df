"""``python -m bench gpu-backlog``: the GPU work still missing at today's code, in priority
order, in one command that fits one call of a GPU machine.

Why one command: GPU time comes in leases of about 15 minutes, at most 10 minutes a command,
and the pending work takes more than one. Five commands typed under a clock, each with its own
budget, go wrong; this one runs them in order, each in its own process, inside ``--budget-s``,
merges each into ``results/`` as it goes and stops cleanly when the budget is spent. The next
call (the same command) does only what is missing. The steps, most wanted first:

1. ``cuda-tests``: the tests that need CUDA (the step under ``set_sync_debug_mode("error")``
   for every arch, the fused max's gradients, mixed precision, the allocator meter), one row
   per test in ``results/gpu/cuda-tests.csv``;
2. ``accuracy`` and 3. ``depth``: ``ablate SPEC --profile gpu --device cuda``, trained trials
   with ROC-AUC beside peak CUDA memory; the study exports ``results/SPEC-gpu.csv`` when it
   completes, and one stopped by the budget keeps its finished trials in its storage
   (``results/SPEC.db``), where the next call resumes it;
4. ``timing``: ``gpu-check``'s timing rows, round by round, and the RevGNN profile page;
5. ``memory``: ``gpu-check``'s figure-1 points, depth series and headline models.

Then ``python -m bench report`` (its time is kept back from the budget) and what is left.

What is done is read from ``results/``, with no state file of its own: a unit (a test run, a
trial, a gpu-check point, a timing round, the profile) is done when its result is there *at
today's code*, i.e. with the running code's ``commit`` (:data:`step.CODE_KEYS`, where a source
hash joins when records carry one).

Modules: ``step`` (what a step is, which code a result came from), ``predict`` (the time each
piece takes), ``steps`` (the five steps: what each reads, what it runs), ``command`` (the plan,
the budget, the run, the CLI).

Example::

    python -m bench gpu-backlog --dry-run            # the plan and what fits, on any machine
    timeout 560 python -m bench gpu-backlog --budget-s 480    # on the GPU; again for the rest
"""
