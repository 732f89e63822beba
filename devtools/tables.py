"""The one table format of the project: pipe-separated columns padded to align, which
reads in a terminal and renders as a Markdown table. `make bench`, the reliability
suite and the docs' figures pages all print their figures with it."""

from __future__ import annotations

from collections.abc import Sequence


def aligned_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of the table: the header, a rule, then one line per row."""
    all_rows = [header, *rows]
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in all_rows
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return lines
