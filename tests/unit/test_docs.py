"""The README documents every setting and docs/stats.md every stat, as the code defines them."""

from pathlib import Path

import pytest

from whoiscrawl import settings
from whoiscrawl.crawl import stats
from whoiscrawl.crawl.config import ConfigError, RunConfig, tunables

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, "run: whoiscrawl settings --readme"


def test_stats_doc_is_current():
    assert (ROOT / "docs" / "stats.md").read_text() == stats.markdown(), "run: whoiscrawl stats --write"


def test_every_setting_has_a_unit_or_is_unitless_text():
    for s in settings.DEFINITIONS:
        if isinstance(s.default, float):
            assert s.name.endswith("_S"), f"{s.name}: a float setting names its unit"
    for name, default, _doc in tunables():
        if isinstance(default, float):
            assert name.endswith("_S"), f"{name}: a float tunable names its unit"


def test_crawl_and_service_settings_are_apart():
    service = {s.name for s in settings.DEFINITIONS}
    crawl = {name for name, _d, _doc in tunables()}
    assert not service & crawl
    assert "HTTP_TIMEOUT_S" in crawl and "REDIS_PORT" in service


def test_settings_parse_from_environment_and_reject_garbage():
    s = RunConfig.from_env(environ={"WHOISCRAWL_HTTP_TIMEOUT_S": "2.5", "WHOISCRAWL_MAX_ATTEMPTS": "7"})
    assert s.http_timeout_s == 2.5 and s.max_attempts == 7
    assert RunConfig.from_env({"max_attempts": 3}, environ={}).max_attempts == 3
    with pytest.raises(ValueError, match="WHOISCRAWL_MAX_ATTEMPTS"):
        RunConfig.from_env(environ={"WHOISCRAWL_MAX_ATTEMPTS": "many"})
    with pytest.raises(ConfigError):
        RunConfig.from_values({"NO_SUCH_SETTING": 1})
    assert settings.Settings(environ={"WHOISCRAWL_REDIS_PORT": "7"}).REDIS_PORT == 7
    with pytest.raises(KeyError):
        settings.Settings({"NO_SUCH_SETTING": 1})


def test_every_declared_stat_is_well_formed():
    for s in stats.CATALOG:
        parts = s.key.split("/")
        assert len(parts) in (3, 4), s.key
        assert parts[1] in ("{registry}", stats.ALL), s.key
        assert s.unit in ("count", "s")
        assert (s.unit == "s") == s.key.endswith("_s"), s.key
