"""The five Regional Internet Registries: canonical names and their real RDAP hosts.

One place names the registries so that the simulator, the router and the
reports agree on spelling.
"""

from __future__ import annotations

from urllib.parse import urlsplit

#: Canonical registry names, as in the RIR delegated-stats files.
REGISTRIES: tuple[str, ...] = ("arin", "ripencc", "apnic", "lacnic", "afrinic")

#: Real RDAP hostnames of each registry (and national registries under them).
REAL_HOSTS: dict[str, str] = {
    "rdap.arin.net": "arin",
    "rdap.db.ripe.net": "ripencc",
    "rdap.apnic.net": "apnic",
    "rdap.lacnic.net": "lacnic",
    "rdap.registro.br": "lacnic",
    "rdap.afrinic.net": "afrinic",
}

def registry_for_url(url: str) -> str:
    """Name the registry behind an RDAP base URL.

    Real hosts are recognised by name; the simulator puts the registry's name as
    the first path segment of its base URLs (``http://127.0.0.1:18081/arin/``).
    Anything else is named by its ``host:port``.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in REAL_HOSTS:
        return REAL_HOSTS[host]
    first = parts.path.strip("/").split("/", 1)[0].lower()
    if first in REGISTRIES:
        return first
    return parts.netloc.lower()
