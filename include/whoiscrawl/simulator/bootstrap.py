"""The RFC 9224 bootstrap file the simulator serves: IANA's map, simulator URLs.

Same prefixes and grouping as IANA's published ``ipv4.json``; each registry's
URL is replaced by the simulator's base URL for it, so a crawler pointed at
this file finds the simulated registries exactly as it would find the real ones.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from whoiscrawl.simulator import sources


def bootstrap_document(base_urls: Mapping[str, str]) -> dict:
    iana = sources.read_bootstrap()
    services = []
    for prefixes, urls in iana["services"]:
        registry = sources.registry_of_rdap_url(urls[0])
        if registry is None or registry not in base_urls:
            continue
        services.append([list(prefixes), [base_urls[registry]]])
    return {
        "description": "RDAP bootstrap file for IPv4 address allocations (registry simulator)",
        "publication": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "services": services,
        "version": iana.get("version", "1.0"),
    }


def write_bootstrap(path: str | Path, document: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
