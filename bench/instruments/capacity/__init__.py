"""``python -m bench capacity``: how deep (or wide) each architecture goes on a graph and a
device, and what it costs -- from the memory model, in about a second; ``--verify`` runs the
boundary for real.

For a dataset (registered, or a graph file ``PATH.pt``), a device kind and a memory size
(``--target-memory``; default: on a GPU machine the device's own memory, on CPU the machine's),
every arch and width gets the deepest depth whose predicted training-step peak fits, with its
parameters and that peak (:func:`bench.measure.memory_model.predict`, the number a trial's
``peak_memory_bytes`` is compared with: CUDA's allocator peak, or the CPU meter's live tensors).
With ``--layers L`` it is the widest width (a multiple of ``--channel-step``) that fits at L.

**Search.** The predicted peak never falls as depth or width grows (activations, parameters and
their state only grow), so the answer is the largest value that fits, found by interpolation
search safeguarded by bisection: the model is affine in depth for most archs, so a boundary
costs a handful of predictions, and both sides of every answer are predicted (it fits; one
more does not). The graph's sizes (the trial's own first partition) are computed once.

**Depth that costs nothing.** Where the prediction at the search limit (``--max-layers``)
equals the one at half of it, memory is flat in depth and the row says "any": DEQ (its depth is
the solver's iteration cap; implicit differentiation keeps no iterate, and the solver's history
stops growing at ``memory_model.DEQ_HISTORY`` iterates) and weight-tied RevGNN (one shared
block, activations rebuilt in the backward pass).

**Verify.** ``--verify`` runs, per row, the two points that bound it -- the deepest (widest)
that fits and the first that does not -- as ordinary trials, each in its own process
(:func:`bench.trial.run_trial_isolated`) on this machine's device, for one epoch (two where an
epoch is one step, so that a step after the warm-up, with Adam's moments, is metered), and
prints predicted beside measured with the model's error. A row is confirmed only when each
point fell on the side of the target the model put it (the deepest fits, the next does not;
out of memory counts as not fitting); otherwise its verdict is the measured boundary,
interpolated from the two measured peaks, and how far the model's is from it
(:func:`~bench.instruments.capacity.verify.judge`). Being within the model's tolerance is not
enough: at 64 MiB both of ResGNN's points once measured under the target, 21% below their
predictions, and were "confirmed". On CPU each point runs under a memory cap of
:data:`TOLERANCE` x the larger of its prediction and the target, so a wrong prediction cannot
take the machine's memory and a capped point is over the target either way. Flat rows run at
two depths (:data:`FLAT_DEPTHS`) and are confirmed when both fit and the deeper grows at most
``FLAT_SLACK``; rows that fit at the search limit are not run. Exit status 1 when a row is not
confirmed.

The package, one job per module: ``search`` (the boundary search and its rows), ``verify`` (the
boundary points as real trials), ``command`` (the flags, the tables, ``main``).
"""

from bench.instruments.capacity.search import Row, depth_row, largest_fitting, width_row
from bench.instruments.capacity.verify import FLAT_DEPTHS, TOLERANCE, verify

__all__ = ["FLAT_DEPTHS", "TOLERANCE", "Row", "depth_row", "largest_fitting", "verify", "width_row"]
