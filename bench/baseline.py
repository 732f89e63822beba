"""The service as it was before the job index, measured beside the current tree in one run.

Issue 12 asks that the index costs submits and workers no more than 10 %. Rates on this
machine move by about that much from run to run, so two runs cannot tell; one run can:
the tree of BENCH_BASELINE_REF, the last commit before the index, is exported with
`git archive` into the run's work directory, and its API (gunicorn), its publishers
(bench/tree_publisher.py) and its worker run from there, on the same Redis, in the same
rounds as the current tree's, in rotating order. Each figure is then the median of its
rounds, and new ÷ baseline compares the two trees on the same machine in the same minutes.
"""

from __future__ import annotations

import io
import statistics
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.stack import BenchError
from devtools.processes import PROJECT_ROOT

# The commit before the job index (726ea8d): "The typed accessors move into backend/jobs".
BENCH_BASELINE_REF = "e7363ab"
# new ÷ baseline must stay at or above this (issue 12: within 10 %).
MIN_RATIO = 0.90


@dataclass(frozen=True)
class Tree:
    """A source tree the bench runs processes from."""

    root: Path
    commit: str
    changed: tuple[str, ...] = ()  # files that differ from the commit (the current tree only)


def _git(*args: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise BenchError(f"git {' '.join(args)} failed: {exc} {detail.decode(errors='replace').strip()}") from None


def current_tree() -> Tree:
    """This checkout, with its commit and the tracked files changed since (measured as they are)."""
    commit = _git("rev-parse", "HEAD").decode().strip()
    changed = tuple(sorted(_git("diff", "--name-only", "HEAD").decode().split()))
    return Tree(PROJECT_ROOT, commit, changed)


def export_tree(ref: str, into: Path) -> Tree:
    """The tree of `ref`, written into `into` (emptied by the caller: the run's work directory)."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}").decode().strip()
    archive = _git("archive", "--format=tar", commit)
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return Tree(into, commit)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def compare(current: list[float], baseline: list[float]) -> dict:
    """Medians of both trees' rounds and their ratio, new ÷ baseline."""
    new, old = median(current), median(baseline)
    return {"current": new, "baseline": old, "ratio": new / old if old else float("nan"),
            "current_runs": current, "baseline_runs": baseline}


def compare_cpu(current: list[dict[str, float]], baseline: list[dict[str, float]]) -> dict:
    """CPU ms per operation of each role (api, redis, worker...), the median of the rounds, for both trees."""
    return {"cpu_ms_per_op": {
        role: {"current": median([run[role] for run in current]), "baseline": median([run[role] for run in baseline])}
        for role in current[0] if role in baseline[0]
    }}


def per_round_ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """numerator ÷ denominator of each round (runs of the same round side by side)."""
    return [top / bottom if bottom else float("nan") for top, bottom in zip(numerators, denominators, strict=True)]
