"""One error base class: every error the package defines derives from it, and the CLI prints it briefly."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import whoiscrawl
from whoiscrawl import cli
from whoiscrawl.crawl.records import BadResponse
from whoiscrawl.errors import WhoiscrawlError


def _error_classes() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(whoiscrawl.__path__, "whoiscrawl."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_error_the_package_defines_derives_from_the_base():
    errors = _error_classes()
    assert "whoiscrawl.devtools.services.MissingDependency" in errors  # the walk reaches subpackages
    outside = sorted(name for name, cls in errors.items()
                     if cls is not WhoiscrawlError and not issubclass(cls, WhoiscrawlError))
    assert outside == []


def test_a_bad_response_is_still_a_value_error():
    assert issubclass(BadResponse, ValueError) and issubclass(BadResponse, WhoiscrawlError)


def test_the_cli_prints_a_project_error_and_exits_non_zero(tmp_path: Path, capsys):
    missing = tmp_path / "no-such-bootstrap.json"
    assert cli.main(["bootstrap", "refresh", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("whoiscrawl bootstrap: ") and str(missing) in err
    assert "Traceback" not in err
