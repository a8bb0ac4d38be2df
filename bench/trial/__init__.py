"""One trial end to end: data, model, optimiser; train, evaluate, measure; a ``TrialRecord``.

Two ways to run one:

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
the protocol), ``training`` (the in-process trial), ``protocol`` (the parent/child wire
format), ``isolation`` (the parent side: a trial in its own process).

Training follows the paper's recipe: Adam, BCE-with-logits (multilabel) or cross-entropy
(multiclass), gradient-norm clipping, a random node partition redrawn every epoch (every
cluster visited once per epoch, loss on the training nodes of each cluster), evaluation on
``eval_parts`` clusters drawn once (or the whole graph with ``batching="full"``), and the test
score taken at the best validation score.

Measurement choices (also in the record's docs):

* Memory (:func:`bench.measure.meters.metered_step`): the batch is moved to the device and the
  gradients are dropped *before* a metered step, so its ``baseline_bytes`` holds the model
  state and the data; the step is split into forward+backward (``fwd_bwd_peak_bytes``;
  ``step_added_bytes`` = that minus the baseline: what the step itself adds) and clipping +
  optimiser step (``optimizer_peak_bytes``); ``peak_memory_bytes`` is the larger, the number a
  user compares with their device. Each is the maximum over the metered steps *after* the first
  one (the warm-up step runs before Adam's moments exist). On CUDA (allocator statistics, free)
  every step is metered. On CPU the live-tensor meter slows each op, so it meters the steps of
  the first epoch and goes on until one step after the warm-up has been metered (a full-batch
  epoch is one step); a ``memory_cap_bytes`` is enforced on metered steps (later epochs repeat
  the same shapes: a random partition into k parts has the same part sizes every epoch).
* ``step_time_s`` / ``epoch_time_s``: means over the epochs after the first (the warm-up
  epoch, which on CPU is also the metered one: the meter's per-op overhead would distort the
  times, more for architectures with many small ops such as reversible backward passes). A
  one-epoch CPU trial therefore has no step time (None); on CUDA (no meter overhead) a
  one-epoch trial's step time is the mean over its steps after the first. ``epoch_time_s`` is training only
  (partitioning included, evaluation excluded); a curve point's ``time_s`` is the whole epoch,
  evaluation included.
* DEQ: ``solver`` holds the mean and max, over training steps, of forward and backward solver
  iterations and relative residuals.
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
