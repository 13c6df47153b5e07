"""Malformed answers, for the fault tests: what a buggy registry, proxy or wrong port sends.

``malform(kind, response)`` turns the registry's proper answer to an IP query into
one of :data:`faults.MALFORMED_KINDS`: broken JSON shapes (built from the proper
body, so everything else in it is real) or broken HTTP (written byte for byte).
"""

from __future__ import annotations

import json
import zlib

from whoiscrawl.simulator.http import Response

_JSON = "application/rdap+json"
#: A gzip body of about 1 MB that decompresses to about 1 GB.
_BOMB_BYTES = 1 << 30


_BOMB: bytes | None = None


def _bomb() -> bytes:
    """A gzip member of about 1 MB holding ``_BOMB_BYTES`` zeros, built in well under a second.

    Each MiB of zeros is compressed after a full flush, so every block after the first is the same
    bytes: the block is repeated instead of compressing a gigabyte.
    """
    global _BOMB
    if _BOMB is None:
        zeros = b"\0" * (1 << 20)
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
        block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
        tail = compressor.flush()
        crc = 0
        for _ in range(_BOMB_BYTES >> 20):
            crc = zlib.crc32(zeros, crc)
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        trailer = crc.to_bytes(4, "little") + (_BOMB_BYTES & 0xFFFFFFFF).to_bytes(4, "little")
        _BOMB = header + first + block * ((_BOMB_BYTES >> 20) - 1) + tail + trailer
    return _BOMB


def _mutated(response: Response, change) -> Response:
    if response.status != 200:
        return response  # only proper network answers are malformed: 404s and redirects stay as they are
    body = json.loads(response.body)
    change(body)
    return Response(200, json.dumps(body).encode(), _JSON)


def _roles(body: dict) -> None:
    for ent in body.get("entities") or []:
        ent["roles"] = [{"role": r} for r in ent.get("roles") or ["registrant"]] + [7, None]


def _entities(body: dict) -> None:
    for ent in body.get("entities") or []:
        ent["entities"] = {"handle": "NOT-A-LIST"}
    body.setdefault("entities", []).append({"handle": "X", "roles": ["abuse"], "entities": "nope"})


def _deep(body: dict) -> None:
    deep: object = "bottom"
    for _ in range(100_000):
        deep = [deep]
    body["remarks"] = [{"description": deep}]


def _huge(body: dict) -> None:  # a real record padded just below the body cap: over the broker's message size
    body["remarks"] = [{"title": "padding", "description": ["x" * 1000] * 950}]


def malform(kind: str, response: Response) -> Response:
    if kind == "notices_not_list":
        return _mutated(response, lambda b: b.__setitem__("notices", {"title": "Terms of Service"}))
    if kind == "roles_not_strings":
        return _mutated(response, _roles)
    if kind == "entities_not_list":
        return _mutated(response, _entities)
    if kind == "deep_json":
        if response.status != 200:
            return response
        # built as text: the JSON encoder itself would not go this deep
        text = response.body.decode()
        return Response(200, (text[:-1] + ',"remarks":' + "[" * 100_000 + "]" * 100_000 + "}").encode(), _JSON)
    if kind == "huge_record":
        return _mutated(response, _huge)
    if kind == "oversized_header":
        return Response(200, raw=b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 70_000 + b"\r\n\r\n")
    if kind == "bad_status_line":
        return Response(200, raw=b"HTTP/1.1 OK-ISH\r\nContent-Length: 2\r\n\r\n{}")
    if kind == "bad_content_length":
        return Response(200, raw=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}")
    if kind == "bad_chunking":
        return Response(200, raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    if kind == "non_http":
        return Response(200, raw=b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    if kind == "bad_location_port":
        return Response(302, b"", _JSON, [("Location", "http://127.0.0.1:99999/arin/ip/1.2.3.4")])
    if kind == "ipv6_location":
        return Response(302, b"", _JSON, [("Location", "http://[::1/arin/ip/1.2.3.4")])
    if kind == "retry_after_overflow":
        return Response(429, b'{"errorCode":429}', _JSON, [("Retry-After", "Fri, 31 Dec 99999 23:59:59 GMT")])
    if kind == "gzip_bomb":
        return Response(200, _bomb(), _JSON, [("Content-Encoding", "gzip")])
    if kind == "endless_chunked":
        return Response(200, b"[" * 65536, _JSON, endless=True)
    raise ValueError(f"unknown malformed kind {kind!r}")
