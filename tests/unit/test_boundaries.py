"""The rooms keep to their audiences: who may import Airflow, the dev tools and subprocess.

Every import of every module is read with ``ast`` (module level and inside
functions, relative ones resolved), so a lazy import inside a function counts
as much as one at the top.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "whoiscrawl"


@dataclass(frozen=True)
class Rule:
    """Modules under ``room`` (a dotted prefix) import none of ``forbidden``; ``room=None``: every module."""

    why: str
    room: str | None
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()

    def applies_to(self, module: str) -> bool:
        inside = self.room is None or _within(module, self.room)
        return inside and not any(_within(module, e) for e in self.exempt)


RULES = (
    Rule("the crawl core runs the same in a task, a benchmark or a script", "whoiscrawl.crawl",
         ("airflow", "whoiscrawl.devtools", "whoiscrawl.orchestration", "subprocess")),
    Rule("only the Airflow edge talks to Airflow", None, ("airflow",),
         exempt=("whoiscrawl.orchestration", "dags")),
    Rule("what a run leaves behind is read without Airflow or the dev tools", "whoiscrawl.results",
         ("airflow", "whoiscrawl.devtools")),
)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, absolute; ``from a import b`` yields ``a`` and ``a.b``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base_parts = package[:len(package) - node.level + 1] if node.level else []
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    names = imported_names(source, module, is_package)
    return sorted(f"{module} imports {name}: {rule.why}"
                  for rule in RULES if rule.applies_to(module)
                  for name in names if any(_within(name, f) for f in rule.forbidden))


def _modules() -> list[tuple[str, Path, bool]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found.append((".".join(parts[:-1] if is_package else parts), path, is_package))
    for folder in ("dags", "bench"):
        for path in sorted((ROOT / folder).glob("*.py")):
            found.append((f"{folder}.{path.stem}", path, False))
    return found


def test_no_module_crosses_a_boundary():
    modules = _modules()
    assert any(name == "whoiscrawl.crawl.kafka_io" for name, _p, _i in modules)
    assert any(name == "whoiscrawl.orchestration.fleet" for name, _p, _i in modules)
    found = [v for name, path, is_package in modules
             for v in violations(path.read_text(encoding="utf-8"), name, is_package)]
    assert found == []


@pytest.mark.parametrize("module,is_package,source", [
    ("whoiscrawl.crawl.engine", False, "def run():\n    from airflow.sdk import BaseHook\n"),
    ("whoiscrawl.crawl.engine", False, "import subprocess as sp\n"),
    ("whoiscrawl.crawl.engine", False, "from ..devtools import stack\n"),
    ("whoiscrawl.crawl.engine", False, "from whoiscrawl import orchestration\n"),
    ("whoiscrawl.crawl", True, "from ..orchestration.connections import kafka_config\n"),
    ("whoiscrawl.settings", False, "class S:\n    def f(self):\n        import airflow\n"),
    ("whoiscrawl.devtools.stack", False, "from airflow.configuration import conf\n"),
    ("whoiscrawl.results.coverage", False, "from whoiscrawl.devtools.services import free_port\n"),
])
def test_the_checker_flags_a_violation(module: str, is_package: bool, source: str):
    assert violations(source, module, is_package) != []


def test_the_checker_lets_allowed_imports_pass():
    assert violations("from airflow.sdk import BaseHook\n", "whoiscrawl.orchestration.connections") == []
    assert violations("import airflow\n", "dags.ipv4_whois_crawl") == []
    assert violations("import subprocess\n", "whoiscrawl.devtools.stack") == []
    assert violations("from . import ipspace\nimport airflowish\n", "whoiscrawl.crawl.seed") == []
    assert imported_names("from . import ipspace\n", "whoiscrawl.crawl.seed") == {
        "whoiscrawl.crawl", "whoiscrawl.crawl.ipspace"}
