"""A progress bar for the operator's commands, drawn on a stream (usually standard error)."""

from __future__ import annotations

from typing import Final, TextIO

BAR_WIDTH: Final = 30


class ProgressBar:
    """One line redrawn in place on a terminal; a line per tenth of the way otherwise."""

    def __init__(self, total: int, out: TextIO, *, unit: str = "") -> None:
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.unit = f" {unit}" if unit else ""
        self._last_tenth = -1

    def show(self, done: int) -> None:
        fraction = min(done / self.total, 1.0) if self.total else 1.0
        filled = int(BAR_WIDTH * fraction)
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{self.total}{self.unit}"
        if self.tty:
            self.out.write("\r" + line)
        elif int(fraction * 10) != self._last_tenth:
            self._last_tenth = int(fraction * 10)
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
