"""Turn one RDAP network response into the project's result record.

Parsing is ipwhois's (``RDAP.lookup(response=...)``, which fetches nothing
when given the response and ``root_ent_check=False``); this module only
validates the body first and flattens what users query most into fields.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from typing import Any

from ipwhois.net import Net
from ipwhois.rdap import RDAP, _RDAPEntity

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
    return int(ipaddress.IPv4Address(".".join(str(int(p)) for p in parts)))


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
    """Nesting depth of a decoded JSON value, counted without recursion; stops counting past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return deepest


def _roles(ent: dict) -> list[str]:
    roles = ent.get("roles")
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


def _text(value: Any) -> str | None:
    """A field users query as text: strings as they are, anything else (a registry's bug) dropped."""
    return value if isinstance(value, str) else None


_LISTS = ("entities", "notices", "remarks", "links", "events", "roles", "status")


def _parser_view(obj: dict, depth: int = 0) -> dict:
    """A copy of an RDAP object with the array members of the wrong type left out, for ipwhois.

    The record keeps the registry's answer as it came (``raw``); the parser sees only what RFC 9083
    allows in those members, so one registry bug (``entities`` an object, ``roles`` numbers) loses that
    member, not the whole network.
    """
    out = {}
    for name, value in obj.items():
        if name in _LISTS:
            if not isinstance(value, list):
                continue
            if name == "entities":
                value = [_parser_view(e, depth + 1) for e in value
                         if isinstance(e, dict) and depth < MAX_ENTITY_DEPTH]
            elif name in ("roles", "status"):
                value = [v for v in value if isinstance(v, str)]
            else:
                value = [v for v in value if isinstance(v, dict)]
        out[name] = value
    return out


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
        name = email = None
        if "vcardArray" in ent:
            parsed = _RDAPEntity(ent)
            try:
                parsed.parse()
                contact = parsed.vars.get("contact") or {}
                name = contact.get("name")
                emails = contact.get("email") or []
                email = emails[0].get("value") if emails else None
            except Exception:  # a malformed vCard loses the name, not the record
                pass
        out.append({"handle": handle, "roles": roles, "name": _text(name), "email": _text(email)})
        _entity_summaries(ent.get("entities"), out, seen, depth + 1)


def build_record(query: int, registry: str, body: dict, url: str,
                 fetched_at: _dt.datetime | None = None) -> dict:
    """The result record for ``query`` answered by ``registry`` with ``body``."""
    start, end = network_bounds(body)
    if not start <= query <= end:
        raise BadResponse("query_outside_network",
                          f"{ipspace.to_str(query)} not in {ipspace.to_str(start)}-{ipspace.to_str(end)}")
    try:
        parsed = RDAP(Net(ipspace.to_str(query))).lookup(
            response=_parser_view(body), bootstrap=True, root_ent_check=False)
    except Exception as exc:
        raise BadResponse("unparseable", repr(exc)) from None
    net = parsed.get("network") or {}
    entities: list[dict] = []
    _entity_summaries(body.get("entities"), entities, set())
    cidrs = [c.strip() for c in (_text(net.get("cidr")) or "").split(",") if c.strip()] \
        or ipspace.range_to_cidrs(start, end)
    when = fetched_at or _dt.datetime.now(_dt.timezone.utc)
    return {
        "query": ipspace.to_str(query),
        "registry": registry,
        "handle": _text(net.get("handle")) or f"{ipspace.to_str(start)} - {ipspace.to_str(end)}",
        "start": ipspace.to_str(start),
        "end": ipspace.to_str(end),
        "cidrs": cidrs,
        "name": _text(net.get("name")),
        "type": _text(net.get("type")),
        "country": _text(net.get("country")),
        "parent_handle": _text(net.get("parent_handle")),
        "entities": entities,
        "url": url,
        "fetched_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "raw": body,
    }
