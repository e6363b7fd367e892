"""Docs that do not rot: module tables name every module, no doc names one machine's paths, and
code states its bars as rules rather than citing tracker issues."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
_HAND_WRITTEN = [
    *_ROOT.glob("docs/*.md"),
    *_ROOT.glob("bench/*.md"),
    *_ROOT.glob("*/README.md"),
    _ROOT / "README.md",
]
_MACHINE_PATH = re.compile(r"/(?:work|home|Users|root)/[\w.-]")
_ISSUE_CITATION = re.compile(r"\bissues? #?\d+\b|\(#\d+\)", re.IGNORECASE)
_PACKAGES = ("bench", "cvae", "export", "modelrepo", "service", "training")


def test_the_service_readme_lists_every_module_of_the_service() -> None:
    readme = (_ROOT / "service" / "README.md").read_text()
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", readme, re.MULTILINE))
    modules = {
        str(path.relative_to(_ROOT / "service"))
        for path in (_ROOT / "service").rglob("*.py")
        if path.name != "__init__.py" and "v1" not in path.parts
    }
    assert sorted(modules - listed) == [], "modules missing from service/README.md's table"
    assert sorted(listed - modules) == [], "the table lists modules that do not exist"


def test_no_doc_names_a_path_of_one_machine() -> None:
    found = [
        f"{path.relative_to(_ROOT)}:{number}: {line.strip()}"
        for path in _HAND_WRITTEN
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _MACHINE_PATH.search(line)
    ]
    assert found == []


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_the_committed_benchmark_results_name_paths_relative_to_the_repository() -> None:
    results = json.loads((_ROOT / "docs" / "benchmarks.json").read_text())
    assert [s for s in _strings(results) if s.startswith("/")] == []


def test_code_states_its_bars_without_citing_tracker_issues() -> None:
    found = [
        f"{path.relative_to(_ROOT)}:{number}: {line.strip()}"
        for package in _PACKAGES
        for path in (_ROOT / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _ISSUE_CITATION.search(line)
    ]
    assert found == []
