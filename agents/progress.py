"""A dependency-free progress line for long CLI work (stderr; quiet when piped)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("sending", total=n) as bar: bar.update(k)``.

    On a terminal it redraws one line at most ten times a second; otherwise it
    prints a line every ``every_seconds`` so logs show it is alive.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "events",
        stream: TextIO | None = None,
        every_seconds: float = 5.0,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every_seconds
        self.count = 0
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._draw(final=False)

    def _draw(self, final: bool) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.count / elapsed
        if self.total:
            pct = 100.0 * self.count / self.total
            text = f"{self.label}: {self.count:,}/{self.total:,} {self.unit} ({pct:5.1f}%)"
        else:
            text = f"{self.label}: {self.count:,} {self.unit}"
        text += f"  {rate:,.0f}/s  {elapsed:,.1f}s"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._draw(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
