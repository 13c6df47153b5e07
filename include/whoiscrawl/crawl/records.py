"""Turn one RDAP network object into the project's result record.

One reader for a lookup's answer and for each network of a relation search
answer: the body is validated first (an object, not too deep, not an error,
a readable range), then the fields users query most are read straight from
the object's members as RFC 9083 names them, each kept only if it is text,
and the registry's answer is kept as it came (``raw``). The fields are the
ones ipwhois reads (handle, name, type, country, parent handle, the range's
CIDRs, each entity's vCard name and first email), read without its parser:
a search answer carries a hundred networks, and parsing them with ipwhois,
not the registry, was what limited a walk.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from whoiscrawl.crawl import ipspace
from whoiscrawl.errors import WhoiscrawlError


class BadResponse(WhoiscrawlError, ValueError):
    """A body that is not a usable RDAP IP network object (the reason names why)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


RATE_LIMIT_NOTICE = "rate limit notice"


def rate_limit_notice(body: Any) -> str | None:
    """LACNIC answers an excess query with 200 and a 'Rate Limit Notice' notice: its text, or None."""
    if not isinstance(body, dict):
        return None
    notices = body.get("notices")
    for notice in notices if isinstance(notices, list) else []:
        if isinstance(notice, dict) and str(notice.get("title", "")).strip().lower() == RATE_LIMIT_NOTICE:
            desc = notice.get("description") or []
            return " ".join(str(d) for d in desc) if isinstance(desc, list) else str(desc)
    return None


def _address(text: Any) -> int:
    # 2015-era quirks: ARIN zero-padded octets, RIPE appended "/32"
    raw = str(text).split("/", 1)[0].strip()
    parts = raw.split(".")
    if len(parts) != 4:
        raise ValueError(raw)
    a, b, c, d = (int(p) for p in parts)
    if not (0 <= a <= 255 and 0 <= b <= 255 and 0 <= c <= 255 and 0 <= d <= 255):
        raise ValueError(raw)
    return (a << 24) | (b << 16) | (c << 8) | d


def network_bounds(body: Any) -> tuple[int, int]:
    """Start and end of the network object, or BadResponse."""
    if not isinstance(body, dict):
        raise BadResponse("not_an_object", type(body).__name__)
    if json_depth(body) > MAX_DEPTH:
        raise BadResponse("too_deep", f"nested deeper than {MAX_DEPTH}")
    if "errorCode" in body:
        raise BadResponse("rdap_error", str(body.get("title") or body.get("errorCode")))
    try:
        start, end = _address(body["startAddress"]), _address(body["endAddress"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BadResponse("no_network", repr(exc)) from None
    if start > end:
        raise BadResponse("bad_range", f"{start}>{end}")
    return start, end


#: Deepest JSON nesting accepted: real answers nest a few levels; deeper ones only exhaust the stack.
MAX_DEPTH = 64
#: Entities nested in entities followed this deep (registrant -> abuse contact -> ...).
MAX_ENTITY_DEPTH = 8


def json_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a decoded JSON value (plain dicts and lists), counted level by level without
    recursion; stops counting past ``limit``. Every answer pays it, so it keeps the inner loop bare."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > limit:
            return depth
        below = []
        for item in level:
            t = type(item)
            if t is dict:
                item = item.values()
            elif t is not list:
                continue
            for v in item:
                t = type(v)
                if t is dict or t is list:
                    below.append(v)
        level = below
    return depth


def _roles(ent: dict) -> list[str]:
    roles = ent.get("roles")
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


def _text(value: Any) -> str | None:
    """A field users query as text: strings as they are, anything else (a registry's bug) dropped."""
    return value if isinstance(value, str) else None


def _vcard_contact(vcard: Any) -> tuple[str | None, str | None]:
    """The name (``fn``) and first ``email`` of a jCard (RFC 7095), read as ipwhois reads them.

    Read directly: a search answer carries a hundred networks with several entities each, and
    ipwhois's entity parser (remarks, events, links too) made up most of the time spent on one.
    A malformed property is skipped; it loses that value, not the entity or the record.
    """
    if not isinstance(vcard, list) or len(vcard) < 2 or not isinstance(vcard[1], list):
        return None, None
    name = email = None
    for prop in vcard[1]:
        if not isinstance(prop, list) or len(prop) < 4 or not isinstance(prop[3], str):
            continue
        if prop[0] == "fn":
            name = prop[3].strip()
        elif prop[0] == "email" and email is None:
            email = prop[3].strip()
    return name, email


def _entity_summaries(entities: Any, out: list[dict], seen: set[str], depth: int = 0) -> None:
    if not isinstance(entities, list) or depth >= MAX_ENTITY_DEPTH:
        return
    for ent in entities:
        if not isinstance(ent, dict):
            continue
        handle = _text(ent.get("handle"))
        roles = _roles(ent)
        key = f"{handle}|{','.join(roles)}"
        if key in seen:
            continue
        seen.add(key)
        name, email = _vcard_contact(ent.get("vcardArray")) if handle is not None else (None, None)
        out.append({"handle": handle, "roles": roles, "name": name, "email": email})
        _entity_summaries(ent.get("entities"), out, seen, depth + 1)


def _field(body: dict, name: str) -> str | None:
    value = body.get(name)
    return value.strip() if isinstance(value, str) else None


def build_record(query: int, registry: str, body: dict, url: str,
                 fetched_at: _dt.datetime | None = None) -> dict:
    """The result record for ``query`` answered by ``registry`` with the network object ``body``."""
    start, end = network_bounds(body)
    if not start <= query <= end:
        raise BadResponse("query_outside_network",
                          f"{ipspace.to_str(query)} not in {ipspace.to_str(start)}-{ipspace.to_str(end)}")
    return network_record(query, registry, body, url, start, end, fetched_at)


def network_record(query: int, registry: str, body: dict, url: str, start: int, end: int,
                   fetched_at: _dt.datetime | None = None) -> dict:
    """The record of a network object whose bounds ``network_bounds`` read (``query``: the address asked)."""
    entities: list[dict] = []
    _entity_summaries(body.get("entities"), entities, set())
    when = fetched_at or _dt.datetime.now(_dt.timezone.utc)
    return {
        "query": ipspace.to_str(query),
        "registry": registry,
        "handle": _field(body, "handle") or f"{ipspace.to_str(start)} - {ipspace.to_str(end)}",
        "start": ipspace.to_str(start),
        "end": ipspace.to_str(end),
        "cidrs": ipspace.range_to_cidrs(start, end),
        "name": _field(body, "name"),
        "type": _field(body, "type"),
        "country": _field(body, "country"),
        "parent_handle": _field(body, "parentHandle"),
        "entities": entities,
        "url": url,
        "fetched_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "raw": body,
    }
