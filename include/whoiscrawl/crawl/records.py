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
    for notice in body.get("notices") or []:
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
    if "errorCode" in body:
        raise BadResponse("rdap_error", str(body.get("title") or body.get("errorCode")))
    try:
        start, end = _address(body["startAddress"]), _address(body["endAddress"])
    except (KeyError, ValueError, TypeError) as exc:
        raise BadResponse("no_network", repr(exc)) from None
    if start > end:
        raise BadResponse("bad_range", f"{start}>{end}")
    return start, end


def _entity_summaries(entities: Any, out: list[dict], seen: set[str]) -> None:
    for ent in entities or []:
        if not isinstance(ent, dict):
            continue
        handle = ent.get("handle")
        key = f"{handle}|{','.join(ent.get('roles') or [])}"
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
        out.append({"handle": handle, "roles": list(ent.get("roles") or []), "name": name, "email": email})
        _entity_summaries(ent.get("entities"), out, seen)


def build_record(query: int, registry: str, body: dict, url: str,
                 fetched_at: _dt.datetime | None = None) -> dict:
    """The result record for ``query`` answered by ``registry`` with ``body``."""
    start, end = network_bounds(body)
    if not start <= query <= end:
        raise BadResponse("query_outside_network",
                          f"{ipspace.to_str(query)} not in {ipspace.to_str(start)}-{ipspace.to_str(end)}")
    try:
        parsed = RDAP(Net(ipspace.to_str(query))).lookup(
            response=body, bootstrap=True, root_ent_check=False)
    except Exception as exc:
        raise BadResponse("unparseable", repr(exc)) from None
    net = parsed.get("network") or {}
    entities: list[dict] = []
    _entity_summaries(body.get("entities"), entities, set())
    cidrs = [c.strip() for c in str(net.get("cidr") or "").split(",") if c.strip()] \
        or ipspace.range_to_cidrs(start, end)
    when = fetched_at or _dt.datetime.now(_dt.timezone.utc)
    return {
        "query": ipspace.to_str(query),
        "registry": registry,
        "handle": net.get("handle") or f"{ipspace.to_str(start)} - {ipspace.to_str(end)}",
        "start": ipspace.to_str(start),
        "end": ipspace.to_str(end),
        "cidrs": cidrs,
        "name": net.get("name"),
        "type": net.get("type"),
        "country": net.get("country"),
        "parent_handle": net.get("parent_handle"),
        "entities": entities,
        "url": url,
        "fetched_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "raw": body,
    }
