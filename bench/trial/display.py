"""What a person sees of a trial's epochs: a tqdm bar on a terminal, else one log line per
epoch on stderr (the isolated parent prints its child's epochs with the same line).
"""

from __future__ import annotations

import sys
from typing import Any


class EpochDisplay:
    """What a person sees of the epochs when ``show``: a tqdm bar on a terminal, else a log
    line per epoch on stderr."""

    def __init__(self, show: bool, epochs: int) -> None:
        self.show = show
        self.bar = _progress_bar(epochs) if show else None

    def show_epoch(self, event: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(epoch_line(event))
        elif self.show:
            log_epoch(event)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress_bar(total: int) -> Any:
    """A tqdm bar on a terminal; None (plain log lines instead) when stderr is a file/pipe."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", file=sys.stderr, dynamic_ncols=True)


def log_epoch(event: dict[str, Any]) -> None:
    """One epoch's line on stderr, flushed: a pipe or a log file sees it as it happens."""
    print(epoch_line(event), file=sys.stderr, flush=True)


def epoch_line(event: dict[str, Any]) -> str:
    """``epoch 3: loss 0.6730 valid 0.4991 test 0.4938 (3.7 s)``; ``-`` where not evaluated."""

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    return (
        f"epoch {event['epoch']}: loss {num(event['loss'])} valid {num(event['valid'])} "
        f"test {num(event['test'])} ({event['time_s']:.1f} s)"
    )
