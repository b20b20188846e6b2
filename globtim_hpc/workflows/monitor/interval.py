"""How often a watcher polls: often while things change, less while nothing does, never below
a floor (the scheduler is shared with everyone else)."""

from __future__ import annotations

import os

from globtim_hpc.errors import UsageError

HARD_FLOOR_S = 1.0
DEFAULT_FLOOR_S = 5.0
MAX_INTERVAL_S = 60.0
BACKOFF_FACTOR = 1.5
FLOOR_ENV = "GLOBTIM_HPC_POLL_FLOOR_S"


def poll_floor_s() -> float:
    """5 s, unless $GLOBTIM_HPC_POLL_FLOOR_S lowers it (tests); never below 1 s."""
    text = os.environ.get(FLOOR_ENV)
    if not text:
        return DEFAULT_FLOOR_S
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{FLOOR_ENV}={text!r} is not a number", "unset it or give seconds"
        ) from None
    return max(HARD_FLOOR_S, value)


class PollInterval:
    """Poll often while things change, back off (x1.5, up to 60 s) while nothing does."""

    def __init__(
        self,
        start_s: float | None = None,
        *,
        floor_s: float | None = None,
        max_s: float = MAX_INTERVAL_S,
        factor: float = BACKOFF_FACTOR,
    ) -> None:
        self.floor_s = poll_floor_s() if floor_s is None else floor_s
        if self.floor_s < HARD_FLOOR_S:
            raise UsageError(
                f"a poll interval of {self.floor_s:g} s is below the {HARD_FLOOR_S:g} s floor",
                "poll less often; the scheduler is shared with everyone else",
            )
        start = self.floor_s if start_s is None else start_s
        if start < self.floor_s:
            raise UsageError(
                f"a poll interval of {start:g} s (--interval, interval_s) is below the "
                f"{self.floor_s:g} s floor",
                f"poll every {self.floor_s:g} s or more; the scheduler is shared with everyone else",
            )
        self.start_s = start
        self.max_s = max(max_s, start)
        self.factor = factor
        self.current_s = start

    def next(self, changed: bool) -> float:
        """Seconds to wait before the next poll, given whether the last one saw a change."""
        if changed:
            self.current_s = self.start_s
        else:
            self.current_s = min(self.max_s, self.current_s * self.factor)
        return self.current_s
