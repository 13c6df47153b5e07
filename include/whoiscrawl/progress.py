"""Progress of a long command: a redrawn bar on a terminal, plain log lines elsewhere (CI, pipes, files).

One small module and no terminal library: on a TTY the bar is one line rewritten with a carriage
return (count, total, percent, rate, time left); otherwise a line is printed when the step starts,
at most every ``log_every_s`` while it runs, and when it ends, so a log stays short and greppable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 28


def _count(n: float) -> str:
    return f"{int(n):,}"


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """``with Progress("crawl", total=N, unit="addresses") as p: p.update(done)``.

    ``total`` may be None (unknown: no bar, only the count and rate). ``tty`` None asks the stream.
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "", *, stream: TextIO | None = None,
                 tty: bool | None = None, log_every_s: float = 10.0, redraw_every_s: float = 0.2,
                 clock=time.monotonic) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.log_every_s, self.redraw_every_s = log_every_s, redraw_every_s
        self.clock = clock
        self.done = 0
        self.note = ""
        self._started = clock()
        # a terminal gets the bar at once; a log gets its first figures after log_every_s (short steps: 2 lines)
        self._last_out = float("-inf") if self.tty else self._started
        self._closed = False
        if not self.tty:
            self._write_line(f"{what}: started" + (f" ({_count(total)} {unit})".rstrip() if total else ""))

    # --- what callers use -------------------------------------------------------------------
    def update(self, done: int | float, note: str = "") -> None:
        """The count so far (not an increment); ``note`` is shown after the figures."""
        self.done, self.note = done, note
        now = self.clock()
        if now - self._last_out >= (self.redraw_every_s if self.tty else self.log_every_s):
            self._emit(now)

    def advance(self, n: int | float = 1, note: str | None = None) -> None:
        self.update(self.done + n, self.note if note is None else note)

    def close(self, message: str = "done") -> None:
        if self._closed:
            return
        self._closed = True
        if self.tty:
            self._emit(self.clock(), final=True)
            self.stream.write(f" {message}\n")
        else:
            self._write_line(f"{self.what}: {message}: {self.figures(self.clock())}")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("done" if exc_type is None else f"stopped ({exc_type.__name__})")

    # --- rendering --------------------------------------------------------------------------
    def rate(self, now: float) -> float:
        elapsed = now - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def figures(self, now: float) -> str:
        rate = self.rate(now)
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{_count(self.done)}/{_count(self.total)}{unit}" if self.total else f"{_count(self.done)}{unit}"]
        if self.total:
            parts.append(f"{100.0 * min(self.done / self.total, 1.0):.0f}%")
        parts.append(f"{rate:,.1f}/s")
        parts.append(f"{_duration(now - self._started)} elapsed")
        if self.total and 0 < rate and self.done < self.total:
            parts.append(f"{_duration((self.total - self.done) / rate)} left")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def bar(self) -> str:
        if not self.total:
            return ""
        filled = int(BAR_WIDTH * min(self.done / self.total, 1.0))
        return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "

    def _emit(self, now: float, final: bool = False) -> None:
        self._last_out = now
        if self.tty:
            self.stream.write(f"\r\x1b[2K{self.what}: {self.bar()}{self.figures(now)}")
            self.stream.flush()
        elif not final:
            self._write_line(f"{self.what}: {self.figures(now)}")

    def _write_line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
