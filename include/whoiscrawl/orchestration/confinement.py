"""What the DAG's Params may reach on the machine that runs a task: nothing but configured folders and origins.

Whoever can trigger the DAG chooses its Params; without these checks a
``seed=/etc/passwd`` would read any file the worker can, ``bootstrap`` would
fetch any URL (the cloud metadata endpoint, an internal service) and
``output_dir`` would write anywhere. Each Param is checked before any I/O:
a file must resolve (symlinks followed) inside ``WHOISCRAWL_SEED_BASE_DIR``,
an output folder inside ``WHOISCRAWL_OUTPUT_BASE_DIR``, a bootstrap URL must
be https or use an origin of ``WHOISCRAWL_BOOTSTRAP_URL_ALLOWLIST``. A refusal
raises :class:`ParamRefused` naming the Param. The machine's own settings
(``WHOISCRAWL_BOOTSTRAP`` and the like) are the operator's and are not confined.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.settings import PREFIX, Settings


class ParamRefused(WhoiscrawlError):
    """A DAG Param names a file, folder or URL this machine does not let Params reach."""

    def __init__(self, param: str, value: str, why: str) -> None:
        super().__init__(f"Param {param!r} refused ({value!r}): {why}")
        self.param = param


def _inside(param: str, value: str, base: Path, setting: str) -> Path:
    """``value`` (relative: to ``base``) resolved with symlinks followed; refused unless it lies in ``base``."""
    root = Path(os.path.realpath(base))
    path = Path(os.path.realpath(root / Path(value).expanduser()))
    if path != root and root not in path.parents:
        raise ParamRefused(param, value, f"it must lie inside {root} ({PREFIX}{setting})")
    return path


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url.strip())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def allowed_origins(settings: Settings) -> set[tuple[str, str, int]]:
    return {_origin(entry) for entry in settings.BOOTSTRAP_URL_ALLOWLIST.split(",") if entry.strip()}


def seed_source(value: str | None, settings: Settings) -> str:
    """``classic``, or the resolved path of a seed file inside the seed folder."""
    if not value or value == "classic":
        return "classic"
    return str(_inside("seed", value, settings.seed_base_dir, "SEED_BASE_DIR"))


def output_base(value: str | None, settings: Settings) -> Path:
    """The folder a run's subfolder goes in: the Param's, inside the output folder, or that folder itself."""
    if not value:
        return Path(os.path.realpath(settings.output_base_dir))
    return _inside("output_dir", value, settings.output_base_dir, "OUTPUT_BASE_DIR")


def bootstrap_source(value: str | None, settings: Settings) -> str:
    """The ``bootstrap`` Param: empty, an https URL, an allowlisted origin's URL, or a file in the seed folder."""
    if not value:
        return ""
    scheme = urlsplit(value).scheme.lower()
    if "://" in value or scheme in ("http", "https", "file", "ftp"):
        if _url_allowed(value, settings):
            return value
        raise ParamRefused("bootstrap", value, f"a bootstrap URL must be https or use an origin listed in "
                                               f"{PREFIX}BOOTSTRAP_URL_ALLOWLIST")
    return str(_inside("bootstrap", value, settings.seed_base_dir, "SEED_BASE_DIR"))


def _url_allowed(value: str, settings: Settings) -> bool:
    """An https URL with a host, or a URL of an allowlisted origin."""
    parts = urlsplit(value)
    if parts.scheme.lower() == "https" and parts.hostname:
        return True
    return parts.scheme.lower() in ("http", "https") and _origin(value) in allowed_origins(settings)


def delegated_urls(value: str | None, settings: Settings) -> str:
    """The ``delegated_urls`` Param: each ``registry=url`` entry's URL under the bootstrap URL rule (no files)."""
    for item in (value or "").split(","):
        _registry, _sep, url = item.partition("=")
        url = url.strip()
        if url and not _url_allowed(url, settings):
            raise ParamRefused("delegated_urls", url, f"a delegated file URL must be https or use an origin "
                                                      f"listed in {PREFIX}BOOTSTRAP_URL_ALLOWLIST")
    return value or ""


def confine_params(params: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    """The Params with ``seed``, ``bootstrap``, ``delegated_urls`` and ``output_dir`` checked; raises :class:`ParamRefused`."""
    settings = settings or Settings()
    checked = dict(params)
    checked["seed"] = seed_source(params.get("seed"), settings)
    checked["bootstrap"] = bootstrap_source(params.get("bootstrap"), settings)
    checked["output_dir"] = str(output_base(params.get("output_dir"), settings))
    checked["delegated_urls"] = delegated_urls(params.get("delegated_urls"), settings)
    return checked
