"""One trial end to end: data, model, optimiser; train, evaluate, measure; a ``TrialRecord``.

Three ways to run one:

* :func:`run_trial` trains in *this* process. ``python -m bench trial ...`` calls it: a CLI
  invocation is itself a fresh process, so it is the isolation (clean allocator statistics, a
  crash takes down nothing else). ``--isolated`` runs it through :func:`run_trial_isolated`.
* :func:`run_trial_isolated` starts ``python -m bench trial --config-json ... --json --events``
  in a fresh process, streams its per-epoch events back (``on_epoch`` may stop it), enforces
  the time budget and turns every way a child can end -- a record, a crash, the kernel's OOM
  killer -- into a record. It never raises for a trial failure.
* :func:`bench.harness.worker.run_trial_in_worker`: a sweep's trials in the worker's own
  process, for ``reproduce --quick`` (smoke runs, where start-up would be most of the time).

The package, one job per module: ``flags`` (the command line, the dry run, the child side of
the protocol), ``training`` (the in-process trial: setup and the epochs, phase by phase),
``step`` (one training step, metered or timed, and one evaluation), ``state`` (what the loop
and the step share), ``display`` (the epoch line and progress bar), ``outcome`` (a record's
start and end, what a failure says), ``hops`` (the record's hop counts), ``protocol`` (the
parent/child wire format), ``isolation`` (the parent side: a trial in its own process),
``lifeline`` (a child that dies with its parent, whatever ends the parent).

How a trial trains (the paper's recipe) is :mod:`bench.trial.training`'s docstring; what a
trial meters and times, and why: docs/trial.md and docs/memory.md.
"""

from bench.trial.flags import add_arguments, config_from_args, main, parse_bytes
from bench.trial.isolation import run_trial_isolated
from bench.trial.protocol import CONFIG_ERROR_PREFIX, FAULT_ENV
from bench.trial.training import OnEpoch, run_trial

__all__ = [
    "CONFIG_ERROR_PREFIX",
    "FAULT_ENV",
    "OnEpoch",
    "add_arguments",
    "config_from_args",
    "main",
    "parse_bytes",
    "run_trial",
    "run_trial_isolated",
]
