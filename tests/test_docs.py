"""The documentation says what the code and the measurements say.

The figures tables of docs/performance.md and docs/reliability.md must be exactly what
devtools/docs_figures.py renders from their JSON; README.md stays short and its links
resolve; every file, module and variable the pages cite exists. Plain files only: no
server, no Redis.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from devtools import docs_figures
from devtools.docs_figures import Paths

ROOT = Path(__file__).resolve().parent.parent
PATHS = Paths(ROOT)
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 200
STALE_HINT = f"run {docs_figures.COMMAND} and commit the page"


def page_named(name: str) -> docs_figures.Page:
    return next(page for page in docs_figures.pages(PATHS) if page.name == name)


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of a Markdown table's rows (header and body, not the rule), unescaped."""
    rows = []
    for line in lines:
        if not line.startswith("|") or set(line) <= {"|", "-", " "}:
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([cell.strip().replace("\\<", "<").replace("\\|", "|") for cell in cells])
    return rows


# --- the figures tables ------------------------------------------------------------------


def test_performance_page_matches_latest_bench_json():
    page = page_named("performance")
    assert docs_figures.rendered(PATHS, page) == page.path.read_text(), (
        f"docs/performance.md disagrees with bench/results/latest.json: {STALE_HINT}"
    )


def test_capacity_page_matches_latest_bench_json():
    page = page_named("capacity")
    assert docs_figures.rendered(PATHS, page) == page.path.read_text(), (
        f"docs/capacity.md disagrees with bench/results/latest.json: {STALE_HINT}"
    )


def test_reliability_page_matches_its_figures_snapshot():
    page = page_named("reliability")
    assert docs_figures.rendered(PATHS, page) == page.path.read_text(), (
        f"docs/reliability.md disagrees with docs/figures/reliability.json: {STALE_HINT}"
    )


def test_reliability_snapshot_holds_figures_as_the_suite_records_them():
    from dataclasses import fields

    from tests.reliability.figures import Figure

    snapshot = json.loads(PATHS.reliability_snapshot.read_text())
    assert snapshot["figures"], "the snapshot of a run with no figures"
    names = {field.name for field in fields(Figure)}
    for figure in snapshot["figures"]:
        assert set(figure) == names


def test_reliability_table_shows_the_figures_as_the_suite_prints_them(monkeypatch):
    from tests.reliability import figures

    snapshot = json.loads(PATHS.reliability_snapshot.read_text())
    monkeypatch.setattr(figures, "_figures", [figures.Figure(**figure) for figure in snapshot["figures"]])
    printed = table_rows(figures.table())
    shown = table_rows(docs_figures.block(PATHS.reliability_page.read_text(), "reliability").splitlines())
    assert shown == printed


def test_performance_targets_are_shown_as_make_bench_prints_them():
    from bench import report

    doc = json.loads(PATHS.bench_json.read_text())
    printed = table_rows(report.table(doc))
    shown = table_rows(docs_figures.block(PATHS.performance_page.read_text(), "performance").splitlines())
    targets = [row for row in printed if row[0] == "target" or any(row[0] == t["name"] for t in doc["targets"])]
    assert len(targets) == len(doc["targets"]) + 1
    for row in targets:
        assert row in shown


# --- the script, on a copy of the project's pages and JSON --------------------------------


@pytest.fixture
def project(tmp_path) -> Paths:
    """The pages and their JSON, copied into a project of their own."""
    copy = Paths(tmp_path)
    for source, target in [
        (PATHS.performance_page, copy.performance_page),
        (PATHS.capacity_page, copy.capacity_page),
        (PATHS.reliability_page, copy.reliability_page),
        (PATHS.bench_json, copy.bench_json),
        (PATHS.reliability_snapshot, copy.reliability_snapshot),
    ]:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return copy


def write_run(project: Paths, figures: list[dict], newer_than_snapshot: bool = True) -> None:
    """A reliability run in var/, written after (or before) the snapshot's run."""
    project.reliability_run.parent.mkdir(parents=True, exist_ok=True)
    project.reliability_run.write_text(json.dumps(figures))
    snapshot_time = json.loads(project.reliability_snapshot.read_text())["run_finished_at"]
    from datetime import datetime

    moment = datetime.fromisoformat(snapshot_time).timestamp() + (3600 if newer_than_snapshot else -3600)
    os.utime(project.reliability_run, (moment, moment))


def outside_block(text: str, name: str) -> str:
    return text.replace(docs_figures.block(text, name) or "", "")


def test_check_passes_when_every_page_matches_its_json(project, capsys):
    assert docs_figures.main(["--check"], project) == 0


def test_check_exits_1_and_names_the_stale_page(project, capsys):
    bench = json.loads(project.bench_json.read_text())
    bench["status_req_per_s"] += 1000
    project.bench_json.write_text(json.dumps(bench))

    assert docs_figures.main(["--check"], project) == 1
    err = capsys.readouterr().err
    assert "docs/performance.md is stale" in err
    assert "docs/reliability.md" not in err


def test_check_changes_nothing(project):
    bench = json.loads(project.bench_json.read_text())
    bench["status_req_per_s"] += 1000
    project.bench_json.write_text(json.dumps(bench))
    before = project.performance_page.read_text()

    docs_figures.main(["--check"], project)
    assert project.performance_page.read_text() == before


def test_rewriting_changes_only_the_text_between_the_markers(project):
    bench = json.loads(project.bench_json.read_text())
    bench["status_req_per_s"] = 4321.0
    project.bench_json.write_text(json.dumps(bench))
    before = project.performance_page.read_text()

    assert docs_figures.main([], project) == 0
    after = project.performance_page.read_text()
    assert "4,321 req/s" in docs_figures.block(after, "performance")
    assert outside_block(after, "performance") == outside_block(before, "performance")
    assert docs_figures.main(["--check"], project) == 0


def test_a_page_without_markers_is_an_error_not_a_silent_skip(project, capsys):
    project.performance_page.write_text("# Performance\n\nno table here\n")
    assert docs_figures.main(["--check"], project) == 2
    assert "figures:performance:start" in capsys.readouterr().err


def test_a_newer_complete_reliability_run_replaces_the_snapshot(project):
    figures = json.loads(project.reliability_snapshot.read_text())["figures"]
    figures[0] = {**figures[0], "value": 123.0}
    write_run(project, figures)

    assert docs_figures.main([], project) == 0
    assert json.loads(project.reliability_snapshot.read_text())["figures"] == figures
    rows = table_rows(docs_figures.block(project.reliability_page.read_text(), "reliability").splitlines())
    assert rows[1][2] == f"123 {figures[0]['unit']}".strip()  # a count has no unit


def test_a_partial_reliability_run_does_not_replace_the_snapshot(project):
    before = project.reliability_snapshot.read_text()
    figures = json.loads(before)["figures"]
    one_area = [figure for figure in figures if figure["area"] == figures[0]["area"]]
    write_run(project, one_area)

    assert docs_figures.main([], project) == 0
    assert project.reliability_snapshot.read_text() == before


def test_an_older_reliability_run_does_not_replace_the_snapshot(project):
    before = project.reliability_snapshot.read_text()
    figures = json.loads(before)["figures"]
    write_run(project, [{**figure, "value": 0.0} for figure in figures], newer_than_snapshot=False)

    assert docs_figures.main([], project) == 0
    assert project.reliability_snapshot.read_text() == before


# --- README.md and the links between pages ------------------------------------------------


def test_readme_stays_at_most_200_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines: move reference material into docs/"


def test_readme_keeps_the_quick_start_a_newcomer_looks_for():
    text = README.read_text()
    for expected in ["make run", "make test", "./celery_worker.sh", "http://127.0.0.1:5555"]:
        assert expected in text, expected
    submit = re.search(r"\$ curl [^\n]*/longtask", text)
    status = re.search(r"\$ curl [^\n]*/status/", text)
    assert submit and status and submit.start() < status.start()


def without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def relative_links(page: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(page.read_text()))
    return [target for target in targets if not re.match(r"[a-z]+:", target)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = without_code_blocks(page.read_text())
    found = {slug(heading) for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
    return found | set(re.findall(r'<a id="([^"]+)">', text))


def broken_links(page: Path) -> list[str]:
    broken = []
    for link in relative_links(page):
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and fragment not in anchors(target):
            broken.append(f"{link}: no such heading or anchor in {target.relative_to(ROOT)}")
    return broken


def test_every_relative_link_from_readme_resolves():
    links = relative_links(README)
    assert any(link.startswith("docs/") for link in links), "README.md should link into docs/"
    assert broken_links(README) == []


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda page: page.name)
def test_every_relative_link_between_doc_pages_resolves(page):
    assert broken_links(page) == []


def test_readme_links_to_every_doc_page():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in relative_links(README)}
    assert [page.name for page in DOC_PAGES if page.resolve() not in linked] == []


# --- what the pages cite exists ------------------------------------------------------------

# Runtime state and local files: cited, never committed.
NOT_IN_THE_REPOSITORY = ("var/", ".venv/", ".env")
# A path ends in "/" or has an extension (`text/event-stream` is no path); a bare file name
# (`routes.py`, named beside its package) must exist somewhere in the project.
PATH_IN_CODE = re.compile(r"^(?:\./)?((?:[\w.-]+/)+(?:[\w-]+\.\w+)?)$")
FILE_NAME_IN_CODE = re.compile(r"^(?:\./)?([\w-]+\.(?:py|sh|yaml|toml|txt|in|md|json|png|js|css|html))$")
MODULE_IN_CODE = re.compile(r"\b(backend(?:\.\w+)+)")


PROJECT_FILE_NAMES = {
    path.name for top in ("backend", "bench", "devtools", "tests", "docs") for path in (ROOT / top).rglob("*.*")
}


def inline_code(page: Path) -> list[str]:
    return re.findall(r"`([^`\n]+)`", without_code_blocks(page.read_text()))


def resolves(dotted: str) -> bool:
    """`backend.jobs.service` or `backend.jobs.service.wait_for_change`: a module, or a name in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            if cut == len(parts):
                return True
            name = parts[cut]
            return re.search(rf"^\s*(?:def|class) {name}\b|^{name} =", module.read_text(), re.MULTILINE) is not None
    return False


@pytest.mark.parametrize("page", [README, *DOC_PAGES], ids=lambda page: page.name)
def test_every_file_and_module_a_page_cites_exists(page):
    missing = []
    for code in inline_code(page):
        path, name = PATH_IN_CODE.match(code), FILE_NAME_IN_CODE.match(code)
        if path and not path.group(1).startswith(NOT_IN_THE_REPOSITORY) and not (ROOT / path.group(1)).exists():
            missing.append(code)
        if name and not (ROOT / name.group(1)).exists() and name.group(1) not in PROJECT_FILE_NAMES:
            missing.append(code)
        missing += [dotted for dotted in MODULE_IN_CODE.findall(code) if not resolves(dotted)]
    assert missing == []


def variables_the_settings_read() -> set[str]:
    config = (ROOT / "config.py").read_text()
    names = set(re.findall(r'(?:env\.\w+|environ\.get|values\.get)\(\s*"([A-Z][A-Z0-9_]+)"', config))
    for script in ("celery_worker.sh", "celery_beat.sh", "flower.sh"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)[:}]", (ROOT / script).read_text())) - {"PATH", "PWD"}
    return names


def test_configuration_page_lists_every_variable_the_settings_read():
    names = variables_the_settings_read()
    assert len(names) > 30, "the pattern no longer finds config.py's variables"
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text()))
    assert sorted(names - documented) == []
