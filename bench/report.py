"""Figures, the table printed on stdout, and the JSON file (one entry per figure)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure.

    ``limit`` and ``ratio`` are None where the figure has no limit; ``ratio`` is the median
    of per-pair ratios, not ``value / limit``. ``met`` is None where there is no target (or
    nothing could be measured). ``cpu_us`` is the CPU time of the measured process (the
    server, or the limit's process for a limit) per request, delivery or event.
    """

    name: str
    value: float | None
    unit: str
    limit: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    cpu_us: float | None = None
    notes: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit,
            "ratio": self.ratio,
            "target": self.target,
            "notes": self.notes,
            "met": self.met,
            "cpu_us": self.cpu_us,
        }


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _met(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def table(figures: Sequence[Figure]) -> str:
    """The figures as an aligned text table, their notes numbered underneath."""
    header = ("figure", "value", "unit", "limit", "ratio", "target", "met?", "cpu µs/op", "note")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for figure in figures:
        mark = ""
        if figure.notes:
            notes.append(figure.notes)
            mark = f"[{len(notes)}]"
        rows.append(
            (
                figure.name,
                _number(figure.value),
                figure.unit,
                _number(figure.limit),
                "-" if figure.ratio is None else f"{figure.ratio:.2f}",
                figure.target or "-",
                _met(figure.met),
                _number(figure.cpu_us),
                mark,
            )
        )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {1, 3, 4, 7}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    out = [line(header), line(["-" * width for width in widths])]
    out.extend(line(row) for row in rows)
    if notes:
        out.append("")
        out.extend(f"[{number}] {note}" for number, note in enumerate(notes, start=1))
    return "\n".join(out)


def print_table(figures: Sequence[Figure], stream: TextIO) -> None:
    stream.write(table(figures) + "\n")
    stream.flush()


def write_json(figures: Sequence[Figure], path: Path, context: dict[str, Any]) -> None:
    """``{"context": {...}, "figures": [{name, value, unit, limit, ratio, target, notes,
    met, cpu_us}, ...]}``."""
    document = {"context": context, "figures": [figure.as_json() for figure in figures]}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
