"""The wire format between a trial's parent and its child process (stdout lines, stdin).

The child prints, one line each: ``@phase NAME`` when the trial enters setup, train or eval;
``@start {json}`` once the model is built (params, predicted memory, device); ``@epoch {json}``
after every epoch; the record as the last line. Writing ``stop`` to the child's stdin ends it
after the current step with status ``pruned``. A parent that sets ``PARENT_ENV`` keeps the
child's stdin open while it lives: when stdin closes the parent is gone, and the child ends
at once (:mod:`bench.trial.lifeline`).
"""

from __future__ import annotations

import json
from typing import Any

from bench.record import TrialRecord

EVENT_PREFIX = "@epoch "
START_PREFIX = "@start "
PHASE_PREFIX = "@phase "
STOP_COMMAND = "stop"
#: set (to the parent's pid) by a parent that holds the child's stdin open until the child ends
PARENT_ENV = "BENCH_TRIAL_PARENT"
#: the record's fields in the ``@start`` line: known once the model is built, kept by the parent
#: should the child die later
START_FIELDS = (
    "params",
    "predicted_params",
    "predicted_peak_bytes",
    "device_name",
    "memory_meter",
    "metric",
)
#: test hook (documented, used by tests only): ``sigkill`` makes the child kill itself with
#: SIGKILL as training starts (what the kernel's OOM killer does); ``hang`` makes it sleep
#: there instead, without checking its time budget (a step that overruns the budget).
FAULT_ENV = "BENCH_TRIAL_FAULT"
#: an ``error`` record whose message starts with this was refused input (CLI exit code 2)
CONFIG_ERROR_PREFIX = "invalid setting "


def emit(prefix: str, payload: Any) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    print(prefix + text, flush=True)


def parse_record(line: str | None) -> TrialRecord | None:
    if not line:
        return None
    try:
        values = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(values, dict) or "status" not in values or "config" not in values:
        return None
    return TrialRecord.from_dict(values)
