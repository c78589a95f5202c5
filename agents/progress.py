"""Progress bars for long CLI work: tqdm on a terminal, one summary line in logs.

tqdm (no dependencies, about 0.5 MB) draws the bar with rate and ETA on
stderr when it is a terminal; piped or logged, the bar stays silent and
:meth:`Progress.close` writes one line with the count and the time, so logs
are not filled with carriage returns. tqdm is imported only when a bar is
made: ``tastestream --help`` does not pay for it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("sending", total=n) as bar: bar.update(k)``.

    Parameters
    ----------
    label
        What is being counted, e.g. ``"sending"``.
    total
        The count at 100%, when known (a bar with ETA); else a running count.
    unit
        The unit of the count, e.g. ``"events"``.
    stream
        Where to draw (stderr by default).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "events",
        stream: TextIO | None = None,
    ) -> None:
        from tqdm import tqdm

        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.bar = tqdm(
            total=total,
            desc=label,
            unit=f" {unit}",
            file=self.stream,
            disable=not self.stream.isatty(),
            dynamic_ncols=True,
            mininterval=0.1,
            leave=True,
        )
        self.count = 0

    def update(self, n: int = 1) -> None:
        """Count ``n`` more."""
        self.count += n
        self.bar.update(n)

    def update_to(self, count: int, total: int | None = None) -> None:
        """Set the count (and the total) to absolute values, e.g. what a poll answered."""
        if total is not None and total != self.bar.total:
            self.bar.total = total
        self.bar.update(count - self.count)
        self.count = count

    def close(self, summary: bool = True) -> None:
        """Finish the bar; when it was silent (not a terminal), write one summary line."""
        self.bar.close()
        if self.bar.disable and summary:
            elapsed = time.monotonic() - self.started
            total = f"/{self.bar.total:,}" if self.bar.total else ""
            line = f"{self.label}: {self.count:,}{total} {self.unit} in {elapsed:.1f}s"
            self.stream.write(line + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(summary=exc_type is None)  # on failure the error line says it all
