"""Fixtures of the browser tests: headless Chromium (Debian's, driven by playwright; no browser download)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from uikit import CHROMIUM


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()

