"""Shared pieces of the simulator tests: one small universe per test session, HTTP helpers."""

from __future__ import annotations

import http.client
import json
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from whoiscrawl.simulator.universe import Universe, build_universe

TEST_SCALE = 0.01
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rdap"

#: The newest real response of each registry (what the simulator's shape follows).
NEWEST_FIXTURE = {
    "arin": "arin/206.41.110.0_20c-rdap.json",
    "ripencc": "ripe/130.59.31.80_whoisit.json",
    "apnic": "apnic/1.1.1.1_whoisit-recorded-20240726.json",
    "lacnic": "lacnic/179.0.0.0-23_rdap-client.json",
    "afrinic": "afrinic/41.0.0.0_rdap-client.json",
}


@lru_cache(maxsize=None)
def small_universe(seed: int = 1, scale: float = TEST_SCALE) -> Universe:
    """Built once per test process and shared by every simulator test module."""
    return build_universe(seed=seed, scale=scale)


def fixture(relative: str) -> dict[str, Any]:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


def shape(obj: dict[str, Any]) -> dict[str, str]:
    """Keys and value types of a JSON object."""
    return {key: type(value).__name__ for key, value in obj.items()}


def dotted(addr: int) -> str:
    return f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def get(url: str, timeout_s: float = 5.0, source: str | None = None, method: str = "GET",
        body: bytes | None = None) -> Answer:
    """One request, no redirect following (the redirects are what is tested)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s,
                                      source_address=(source, 0) if source else None)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def post_json(url: str, payload: Any, timeout_s: float = 5.0) -> Answer:
    return get(url, timeout_s, method="POST", body=json.dumps(payload).encode())


def raw_exchange(url: str, timeout_s: float = 2.0) -> tuple[bytes, bool]:
    """Send a GET on a plain socket; return all bytes read and whether it timed out."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks), False
                chunks.append(chunk)
        except socket.timeout:
            return b"".join(chunks), True


def parse_ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d
