"""The figures the reliability suite measures, printed as one table at the end of the run.

Tests call `record(...)`; the table also lands in var/reliability/figures.json so
the README's table can be reproduced from a real run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from devtools.tables import aligned_table
from tests.helpers import PROJECT_ROOT

RESULTS_PATH = PROJECT_ROOT / "var" / "reliability" / "figures.json"


@dataclass(frozen=True)
class Figure:
    area: str
    name: str
    value: float
    unit: str
    target: str
    met: bool


_figures: list[Figure] = []


def record(area: str, name: str, value: float, unit: str, target: str, met: bool) -> None:
    _figures.append(Figure(area, name, float(value), unit, target, bool(met)))


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: p95 of 20 values is the 19th smallest."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _format(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def table() -> list[str]:
    rows = [
        (f.area, f.name, f"{_format(f.value)} {f.unit}".strip(), f.target, "ok" if f.met else "MISSED")
        for f in _figures
    ]
    return aligned_table(("area", "figure", "measured", "target", ""), rows)


def save() -> None:
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps([asdict(f) for f in _figures], indent=2) + "\n")


def has_figures() -> bool:
    return bool(_figures)
