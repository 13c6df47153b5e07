"""The README documents every setting, as the settings module defines it."""

from pathlib import Path

from whoiscrawl import settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, "run: whoiscrawl settings --markdown, and paste into the README"


def test_every_setting_has_a_unit_or_is_unitless_text():
    for s in settings.DEFINITIONS:
        if isinstance(s.default, float):
            assert s.name.endswith("_S"), f"{s.name}: a float setting names its unit"


def test_settings_parse_from_environment_and_reject_garbage():
    import pytest

    s = settings.Settings(environ={"WHOISCRAWL_HTTP_TIMEOUT_S": "2.5", "WHOISCRAWL_MAX_ATTEMPTS": "7"})
    assert s.HTTP_TIMEOUT_S == 2.5 and s.MAX_ATTEMPTS == 7
    assert settings.Settings({"max_attempts": 3}, environ={}).MAX_ATTEMPTS == 3
    with pytest.raises(ValueError, match="WHOISCRAWL_MAX_ATTEMPTS"):
        settings.Settings(environ={"WHOISCRAWL_MAX_ATTEMPTS": "many"})
    with pytest.raises(KeyError):
        settings.Settings({"NO_SUCH_SETTING": 1})
