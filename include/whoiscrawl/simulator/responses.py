"""RDAP bodies shaped like each registry's real answers (RFC 9083 plus extensions).

Key sets, value types, handle formats, entity and vCard layouts, notices and
links follow the newest real response of each registry in
``tests/fixtures/rdap`` (ARIN 2024, RIPE 2022, APNIC 2024, LACNIC and AFRINIC
2020).  Contacts are invented from the network's hash.  Bodies are rendered
once per network with a placeholder for the query URL (which the registries
echo in every link ``value``) and kept in a small LRU cache.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import date
from typing import Any, Mapping

from whoiscrawl.simulator import naming, search
from whoiscrawl.simulator.universe import Network, Universe

try:  # msgspec (pulled in by Airflow) encodes several times faster than json
    from msgspec.json import encode as _encode
except ImportError:  # pragma: no cover - plain json is a fine fallback
    def _encode(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

RDAP_CONTENT_TYPE = "application/rdap+json"
_QUERY = "@@query-url@@"
_QUERY_BYTES = _QUERY.encode()

#: rdapConformance of a network answer, per registry.
CONFORMANCE: dict[str, list[str]] = {
    "arin": ["nro_rdap_profile_0", "rdap_level_0", "cidr0", "arin_originas0"],
    "ripencc": ["rdap_level_0"],
    "apnic": ["history_version_0", "nro_rdap_profile_0", "cidr0", "rdap_level_0"],
    "lacnic": ["rdap_level_0", "lacnic_level_0", "cidr0"],
    "afrinic": ["rdap_level_0"],
}
#: What RFC 9910 adds: a network object advertises the searches, a search answer its results member.
LOOKUP_SEARCH_CONFORMANCE = ["rirSearch1", "ips"]
SEARCH_CONFORMANCE = ["rirSearch1", "ips", "ipSearchResults"]
PORT43 = {"arin": "whois.arin.net", "ripencc": "whois.ripe.net", "apnic": "whois.apnic.net",
          "lacnic": "whois.lacnic.net", "afrinic": "whois.afrinic.net"}

_COUNTRY_NAMES = {
    "US": "United States", "CA": "Canada", "NL": "Netherlands", "DE": "Germany", "GB": "United Kingdom",
    "FR": "France", "CH": "Switzerland", "RU": "Russian Federation", "AU": "Australia", "CN": "China",
    "JP": "Japan", "IN": "India", "ID": "Indonesia", "BR": "Brazil", "AR": "Argentina", "MX": "Mexico",
    "ZA": "South Africa", "NG": "Nigeria", "EG": "Egypt", "KE": "Kenya", "KR": "Korea", "SE": "Sweden",
    "IT": "Italy", "ES": "Spain", "PL": "Poland", "TR": "Turkey", "IR": "Iran", "CL": "Chile",
}
_STREETS = ("Main St", "Harbour Rd", "Station Sq", "Market St", "Park Ave", "Church St", "Hill Rd",
            "Industrial Way", "Airport Blvd", "Discovery Dr")
_CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Kingston", "Newport", "Ashford",
           "Greenville", "Bayview", "Westwood")


# --- small helpers --------------------------------------------------------------

def _stamp(day: date, h: int, salt: int, registry: str) -> str:
    seconds = naming.salted(h, salt) % 86400
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if registry == "arin":  # ARIN writes US Eastern local time
        offset = "-04:00" if 3 < day.month < 11 else "-05:00"
        return f"{day.isoformat()}T{clock}{offset}"
    return f"{day.isoformat()}T{clock}Z"


def _events(net: Network, h: int, order: str) -> list[dict[str, str]]:
    registration = {"eventAction": "registration", "eventDate": _stamp(net.registered, h, 21, net.registry)}
    changed = {"eventAction": "last changed", "eventDate": _stamp(net.last_changed, h, 22, net.registry)}
    return [changed, registration] if order == "changed-first" else [registration, changed]


def _cidr0(net: Network) -> list[dict[str, Any]]:
    return [{"v4prefix": naming.dotted(s), "length": length} for s, length in net.cidrs]


def _vcard(*props: list) -> list:
    return ["vcard", [["version", {}, "text", "4.0"], *props]]


def _address_lines(h: int, country: str) -> list[str]:
    number = naming.salted(h, 31) % 900 + 1
    return [f"{number} {naming.pick(_STREETS, h, 32)}", naming.pick(_CITIES, h, 33),
            f"{naming.salted(h, 34) % 90000 + 10000}", _COUNTRY_NAMES.get(country, country)]


def _phone(h: int, country_prefix: str = "+1") -> str:
    n = naming.salted(h, 35)
    return f"{country_prefix}-{n % 900 + 100}-{n // 1000 % 900 + 100}-{n // 10 ** 7 % 9000 + 1000}"


def _domain(h: int) -> str:
    return naming.org_token(h).lower() + naming.pick((".net", ".com", ".org", ".io"), h, 36)


# --- per registry -----------------------------------------------------------------

def _arin_notices() -> list[dict[str, Any]]:
    return [
        {"title": "Terms of Service",
         "description": ["By using the ARIN RDAP/Whois service, you are agreeing to the RDAP/Whois Terms of Use"],
         "links": [{"value": _QUERY, "rel": "terms-of-service", "type": "text/html",
                    "href": "https://www.arin.net/resources/registry/whois/tou/"}]},
        {"title": "Whois Inaccuracy Reporting",
         "description": ["If you see inaccuracies in the results, please visit: "],
         "links": [{"value": _QUERY, "rel": "inaccuracy-report", "type": "text/html",
                    "href": "https://www.arin.net/resources/registry/whois/inaccuracy_reporting/"}]},
        {"title": "Copyright Notice",
         "description": ["Copyright 1997-2026, American Registry for Internet Numbers, Ltd."], "links": []},
    ]


def _arin(net: Network, h: int, base: str) -> dict[str, Any]:
    domain = _domain(h)
    def links(kind: str, handle: str, self_href: str) -> list[dict[str, str]]:
        return [
            {"value": _QUERY, "rel": "self", "type": RDAP_CONTENT_TYPE, "href": self_href},
            {"value": _QUERY, "rel": "alternate", "type": "application/xml",
             "href": f"https://whois.arin.net/rest/{kind}/{handle}"},
        ]

    org_handle = naming.org_token(h)[:8] + (f"-{naming.salted(h, 40) % 99 + 1}" if naming.salted(h, 41) % 3 == 0 else "")
    org = naming.org_name("arin", h)
    label = "\n".join(_address_lines(h, net.country or "US"))
    family = naming.person_name(h)[1].upper()
    pocs = []
    for salt, roles, kind, fn in ((50, ["abuse"], "group", f"{org} Abuse"),
                                  (51, ["noc", "technical"], "group", f"{org} Network Operations"),
                                  (52, ["administrative"], "individual", " ".join(naming.person_name(h ^ 52)))):
        poc_handle = (f"{family[:5]}{naming.salted(h, salt) % 999 + 1}-ARIN" if kind == "individual"
                      else f"{roles[0][:3].upper()}{naming.salted(h, salt) % 99999 + 1}-ARIN")
        props = [["adr", {"label": label}, "text", [""] * 7], ["fn", {}, "text", fn]]
        if kind == "group":
            props.append(["org", {}, "text", fn])
        props += [["kind", {}, "text", kind],
                  ["email", {}, "text", f"{roles[0]}@{domain}"],
                  ["tel", {"type": ["work", "voice"]}, "text", _phone(h ^ salt)]]
        pocs.append({
            "handle": poc_handle, "vcardArray": _vcard(*props), "roles": roles,
            "links": links("poc", poc_handle, f"{base}entity/{poc_handle}"),
            "events": _events(net, h ^ salt, "changed-first"), "status": ["validated"],
            "port43": PORT43["arin"], "objectClassName": "entity", "remarks": [], "entities": [],
        })
    registrant = {
        "handle": org_handle,
        "vcardArray": _vcard(["fn", {}, "text", org], ["adr", {"label": label}, "text", [""] * 7],
                             ["kind", {}, "text", "org"]),
        "roles": ["registrant"],
        "links": links("org", org_handle, f"{base}entity/{org_handle}"),
        "events": _events(net, h ^ 53, "changed-first"), "status": [], "port43": PORT43["arin"],
        "objectClassName": "entity", "remarks": [], "entities": pocs,
    }
    origin = [] if naming.salted(h, 42) % 4 else [naming.salted(h, 43) % 60000 + 1000]
    start = naming.dotted(net.start)
    return {
        "rdapConformance": CONFORMANCE["arin"],
        "notices": _arin_notices(),
        "handle": net.handle,
        "startAddress": start,
        "endAddress": naming.dotted(net.end),
        "ipVersion": "v4",
        "name": net.name,
        "type": net.type,
        "parentHandle": net.parent_handle,
        "remarks": [{"title": "Registration Comments", "description": [f"https://www.{domain}/"]}],
        "events": _events(net, h, "changed-first"),
        "links": [
            {"value": _QUERY, "rel": "self", "type": RDAP_CONTENT_TYPE, "href": f"{base}ip/{start}"},
            {"value": _QUERY, "rel": "alternate", "type": "application/xml",
             "href": f"https://whois.arin.net/rest/net/{net.handle}"},
        ],
        "entities": [registrant],
        "port43": PORT43["arin"],
        "status": ["active"],
        "objectClassName": "ip network",
        "cidr0_cidrs": _cidr0(net),
        "arin_originas0_originautnums": origin,
    }


def _ripe_notices() -> list[dict[str, Any]]:
    return [
        {"title": "Filtered", "description": ["This output has been filtered."]},
        {"title": "Source", "description": ["Objects returned came from source", "RIPE"]},
        {"title": "Terms and Conditions",
         "description": ["This is the RIPE Database query service. The objects are in RDAP format."],
         "links": [{"value": _QUERY, "rel": "terms-of-service",
                    "href": "http://www.ripe.net/db/support/db-terms-conditions.pdf", "type": "application/pdf"}]},
    ]


_RIPE_COPYRIGHT = "http://www.ripe.net/data-tools/support/documentation/terms"


def _stub(handle: str, roles: list[str]) -> dict[str, Any]:
    return {"handle": handle, "roles": roles, "objectClassName": "entity"}


def _ripe(net: Network, h: int, base: str) -> dict[str, Any]:
    domain = _domain(h)
    token = naming.org_token(h)
    given, family = naming.person_name(h)
    person = f"{given[0]}{family[0]}{naming.salted(h, 60) % 9999 + 1}-RIPE"
    mnt = f"{token[:12]}-MNT"
    org = f"ORG-{token[:2]}{naming.salted(h, 61) % 99 + 1}-RIPE"
    abuse = f"AR{naming.salted(h, 62) % 99999 + 1}-RIPE"
    maintainer = "RIPE-NCC-LEGACY-MNT" if net.type == "LEGACY" else (
        "RIPE-NCC-HM-MNT" if net.level == 0 else mnt)
    lines = _address_lines(h, net.country)
    return {
        "handle": net.handle,
        "startAddress": naming.dotted(net.start),
        "endAddress": naming.dotted(net.end),
        "ipVersion": "v4",
        "name": net.name,
        "type": net.type,
        "country": net.country,
        "parentHandle": net.parent_handle,
        "entities": [
            _stub(org, ["registrant"]),
            _stub(maintainer, ["registrant"]),
            _stub(person, ["technical", "administrative"]),
            _stub(mnt, ["registrant"]),
            {"handle": abuse,
             "vcardArray": _vcard(["fn", {}, "text", "Abuse-C Role"], ["kind", {}, "text", "group"],
                                  ["adr", {"label": "\n".join([naming.org_name("ripencc", h)] + lines)},
                                   "text", [""] * 7],
                                  ["email", {"type": "email"}, "text", f"abuse@{domain}"],
                                  ["email", {"type": "abuse"}, "text", f"abuse@{domain}"]),
             "roles": ["abuse"],
             "entities": [_stub(mnt, ["registrant"])],
             "objectClassName": "entity"},
        ],
        "remarks": [{"description": [f"{lines[1]}, {_COUNTRY_NAMES.get(net.country, net.country)}"]}],
        "links": [
            {"value": _QUERY, "rel": "self", "href": _QUERY},
            {"value": _RIPE_COPYRIGHT, "rel": "copyright", "href": _RIPE_COPYRIGHT},
        ],
        "events": [{"eventAction": "last changed", "eventDate": _stamp(net.last_changed, h, 22, "ripencc")}],
        "rdapConformance": CONFORMANCE["ripencc"],
        "notices": _ripe_notices(),
        "port43": PORT43["ripencc"],
        "objectClassName": "ip network",
    }


def _apnic_notices() -> list[dict[str, Any]]:
    return [
        {"title": "Source", "description": ["Objects returned came from source", "APNIC"]},
        {"title": "Terms and Conditions",
         "description": ["This is the APNIC WHOIS Database query service. The objects are in RDAP format."],
         "links": [{"value": _QUERY, "rel": "terms-of-service",
                    "href": "http://www.apnic.net/db/dbcopyright.html", "type": "text/html"}]},
        {"title": "Whois Inaccuracy Reporting",
         "description": ["If you see inaccuracies in the results, please visit: "],
         "links": [{"value": _QUERY, "rel": "inaccuracy-report",
                    "href": "https://www.apnic.net/manage-ip/using-whois/abuse-and-spamming/invalid-contact-form",
                    "type": "text/html"}]},
    ]


def _apnic(net: Network, h: int, base: str) -> dict[str, Any]:
    domain = _domain(h)
    token = naming.org_token(h)
    cidr_start, cidr_len = net.cidrs[0]
    cidr = f"{naming.dotted(cidr_start)}/{cidr_len}"
    label = " ".join(_address_lines(h, net.country))

    def entity(handle: str, roles: list[str], salt: int, props: list, remarks: list | None = None) -> dict:
        body: dict[str, Any] = {"roles": roles, "events": _events(net, h ^ salt, "registration-first")}
        if remarks:
            body["remarks"] = remarks
        body["links"] = [{"value": _QUERY, "rel": "self", "href": f"{base}entity/{handle}",
                          "type": RDAP_CONTENT_TYPE}]
        body["vcardArray"] = _vcard(*props)
        body["objectClassName"] = "entity"
        body["handle"] = handle
        return body

    contact = f"{token[:2]}{naming.salted(h, 70) % 999 + 1}-AP"
    irt = f"IRT-{token[:12]}-{net.country}"
    org = f"ORG-{token[:4]}{naming.salted(h, 71) % 9 + 1}-AP"
    email = f"noc@{domain}"
    body: dict[str, Any] = {
        "rdapConformance": CONFORMANCE["apnic"],
        "notices": _apnic_notices(),
        "country": net.country,
        "events": _events(net, h, "registration-first"),
        "name": net.name,
        "remarks": [{"description": [naming.org_name("apnic", h)], "title": "description"}],
        "links": [
            {"value": _QUERY, "rel": "self", "href": f"{base}ip/{cidr}", "type": RDAP_CONTENT_TYPE},
            {"value": _QUERY, "rel": "related", "type": "text/html",
             "href": f"https://netox.apnic.net/search/{cidr.replace('/', '%2F')}"
                     "?utm_source=rdap&utm_medium=result&utm_campaign=rdap_result"},
        ],
        "status": ["active"],
        "type": net.type,
        "endAddress": naming.dotted(net.end),
        "ipVersion": "v4",
        "startAddress": naming.dotted(net.start),
        "objectClassName": "ip network",
        "handle": net.handle,
    }
    if net.level > 0:  # APNIC names the parent of sub-assignments only
        body["parentHandle"] = net.parent_handle
    body["entities"] = [
        entity(contact, ["technical", "administrative"], 72, [
            ["fn", {}, "text", f"{token.title()} Infrastructure Contact"], ["kind", {}, "text", "group"],
            ["adr", {"label": label}, "text", [""] * 7], ["tel", {"type": "voice"}, "text", _phone(h, "+61")],
            ["email", {}, "text", email]]),
        entity(irt, ["abuse"], 73, [
            ["fn", {}, "text", irt], ["kind", {}, "text", "group"],
            ["adr", {"label": label}, "text", [""] * 7], ["email", {}, "text", f"abuse@{domain}"],
            ["email", {"pref": "1"}, "text", f"abuse@{domain}"]],
            remarks=[{"description": [f"abuse@{domain} was validated on {net.last_changed.isoformat()}"],
                      "title": "remarks"}]),
        entity(org, ["registrant"], 74, [
            ["fn", {}, "text", naming.org_name("apnic", h)], ["kind", {}, "text", "org"],
            ["adr", {"label": label}, "text", [""] * 7], ["tel", {"type": "voice"}, "text", _phone(h ^ 1, "+61")],
            ["email", {}, "text", email]]),
    ]
    body["cidr0_cidrs"] = _cidr0(net)
    body["port43"] = PORT43["apnic"]
    return body


_LACNIC_RDAP = "http://www.lacnic.net/web/lacnic/registration-data-access-protocol"


def _lacnic_notices() -> list[dict[str, Any]]:
    return [
        {"title": "Terms and Conditions", "description": ["This is the LACNIC RDAP service. Objects are in RDAP format."],
         "links": [{"value": _LACNIC_RDAP, "rel": "terms-of-service", "href": _LACNIC_RDAP, "type": "text/html"}]},
        {"title": "RDAP Cache", "description": ["This object is stored in a temporary cache.",
                                                "Rdap objects may take up to 4 hours to refresh."]},
    ]


def _lacnic(net: Network, h: int, base: str) -> dict[str, Any]:
    domain = _domain(h)
    token = naming.org_token(h)
    country = net.country
    registrant = f"{country}-{token[:4]}{naming.salted(h, 80) % 99 + 1}-LACNIC"
    given, family = naming.person_name(h)
    person = f"{given[0]}{family[0]}{naming.salted(h, 81) % 999 + 1}"
    lines = _address_lines(h, country)
    return {
        "objectClassName": "ip network",
        "handle": net.handle,
        "startAddress": naming.dotted(net.start),
        "endAddress": naming.dotted(net.end),
        "ipVersion": "v4",
        "cidr0_cidrs": _cidr0(net),
        "type": net.type,
        "lacnic_originAutnum": "N/A" if naming.salted(h, 82) % 3 else f"AS{naming.salted(h, 83) % 60000 + 1000}",
        "entities": [
            {"objectClassName": "entity", "handle": registrant,
             "vcardArray": _vcard(["fn", {}, "text", naming.org_name("lacnic", h).upper()],
                                  ["kind", {}, "text", "individual" if naming.salted(h, 84) % 4 == 0 else "org"]),
             "roles": ["registrant"],
             "links": [{"value": f"{base}entity/{registrant}", "rel": "self", "type": RDAP_CONTENT_TYPE,
                        "href": f"{base}entity/{registrant}"}]},
            {"objectClassName": "entity", "handle": person, "roles": ["technical", "abuse"],
             "vcardArray": _vcard(["fn", {}, "text", f"{given} {family}"], ["kind", {}, "text", "individual"],
                                  ["adr", {}, "text", ["", "", lines[0], lines[1], "", lines[2], country]],
                                  ["tel", {"type": "voice"}, "text", _phone(h, "54").replace("-", " ")],
                                  ["email", {}, "text", f"{given.lower()}.{family.lower()}@{domain}"]),
             "events": _events(net, h ^ 85, "registration-first"),
             "links": [{"value": f"{base}entity/{person}", "rel": "self", "type": RDAP_CONTENT_TYPE,
                        "href": f"{base}entity/{person}"}]},
        ],
        "lacnic_reverseDelegations": [
            {"startAddress": naming.dotted(net.start), "endAddress": naming.dotted(net.end),
             "nameservers": [
                 {"objectClassName": "nameserver", "ldhName": f"NS{k}.{domain.upper()}",
                  "events": [{"eventAction": "delegation check",
                              "eventDate": _stamp(net.last_changed, h, 86 + k, "lacnic"), "status": ["AA"]},
                             {"eventAction": "last correct delegation check",
                              "eventDate": _stamp(net.last_changed, h, 86 + k, "lacnic")}]}
                 for k in (1, 2)]}
        ],
        "events": _events(net, h, "registration-first"),
        "links": [
            {"value": _QUERY, "rel": "self", "href": _QUERY},
            {"value": _LACNIC_RDAP, "rel": "copyright", "href": _LACNIC_RDAP},
        ],
        "rdapConformance": CONFORMANCE["lacnic"],
        "notices": _lacnic_notices(),
        "port43": PORT43["lacnic"],
    }


def _afrinic_notices() -> list[dict[str, Any]]:
    return [{"title": "ABOUT", "description": ["This is the AfriNIC RDAP server."],
             "links": [{"value": _QUERY, "rel": "describedby",
                        "href": "https://www.afrinic.net/support/whois-db/reference-manual",
                        "hreflang": ["en"], "type": "text/html", "title": "AFRINIC Database Reference Manual",
                        "media": "screen"}]}]


def _afrinic(net: Network, h: int, base: str) -> dict[str, Any]:
    domain = _domain(h)
    given, family = naming.person_name(h)
    person = f"{given[0]}{family[0]}{naming.salted(h, 90) % 99 + 1}-AFRINIC"
    lines = _address_lines(h, net.country)
    return {
        "lang": "en",
        "remarks": [{"title": "Remark", "description": [naming.org_name("afrinic", h)]}],
        "notices": _afrinic_notices(),
        "handle": net.handle,
        "status": ["active"],
        "port43": PORT43["afrinic"],
        "type": net.type,
        "country": net.country,
        "entities": [{
            "lang": "en", "handle": person, "status": ["active"], "port43": PORT43["afrinic"],
            "vcardArray": _vcard(["kind", {}, "text", "individual"], ["fn", {}, "text", f"{given} {family}"],
                                 ["tel", {"type": "work"}, "uri", "tel:" + _phone(h, "+27")],
                                 ["email", {"type": "work"}, "text", f"{given.lower()}@{domain}"],
                                 ["adr", {"type": "work"}, "text",
                                  [naming.org_name("afrinic", h), lines[0], lines[1], "", "", "", ""]]),
            "roles": ["administrative", "technical"], "objectClassName": "entity", "rdapConformance": [],
        }],
        "startAddress": naming.dotted(net.start),
        "endAddress": naming.dotted(net.end),
        "ipVersion": "v4",
        "parentHandle": net.parent_handle,
        "cidr0_cidrs": _cidr0(net),
        "objectClassName": "ip network",
        "rdapConformance": CONFORMANCE["afrinic"],
    }


_BUILDERS = {"arin": _arin, "ripencc": _ripe, "apnic": _apnic, "lacnic": _lacnic, "afrinic": _afrinic}


# --- errors, help, notices ------------------------------------------------------------

def _registry_notices(registry: str) -> list[dict[str, Any]]:
    if registry == "ripencc":
        return [{"title": "Terms and Conditions",
                 "description": ["This is the RIPE Database query service. The objects are in RDAP format."],
                 "links": [{"rel": "terms-of-service", "href": "http://www.ripe.net/db/support/db-terms-conditions.pdf",
                            "type": "application/pdf"}]}]
    if registry == "apnic":
        return [{"description": ["This is the APNIC RDAP query service. The objects are in RDAP format."],
                 "links": [{"href": "http://www.apnic.net/db/dbcopyright.html", "rel": "terms-of-service",
                            "type": "text/html"}],
                 "title": "Terms and Conditions"}]
    if registry == "arin":
        return [{"title": "Terms of Service",
                 "description": ["By using the ARIN RDAP/Whois service, you are agreeing to the RDAP/Whois Terms of Use"],
                 "links": [{"rel": "terms-of-service", "type": "text/html",
                            "href": "https://www.arin.net/resources/registry/whois/tou/"}]}]
    if registry == "lacnic":
        return [n for n in _lacnic_notices() if n["title"] == "Terms and Conditions"]
    return [{"title": "ABOUT", "description": ["This is the AfriNIC RDAP server."],
             "links": [{"rel": "describedby", "href": "https://www.afrinic.net/support/whois-db/reference-manual",
                        "type": "text/html"}]}]


def error_body(registry: str, status: int, title: str, description: list[str]) -> bytes:
    """An RDAP error object (RFC 9083 section 6) in the registry's style."""
    if registry == "apnic":  # APNIC sends errorCode as a string
        body: dict[str, Any] = {"description": description, "errorCode": str(status), "title": title,
                                "notices": _registry_notices("apnic"), "rdapConformance": ["rdap_level_0"]}
    elif registry == "ripencc":
        body = {"links": [{"value": _RIPE_COPYRIGHT, "rel": "copyright", "href": _RIPE_COPYRIGHT}],
                "rdapConformance": ["cidr0", "rdap_level_0", "nro_rdap_profile_0"],
                "notices": _registry_notices("ripencc"), "port43": PORT43["ripencc"],
                "errorCode": status, "title": title, "description": description}
    else:
        body = {"rdapConformance": CONFORMANCE[registry], "notices": _registry_notices(registry),
                "errorCode": status, "title": title, "description": description}
        if registry in ("arin", "afrinic"):
            body["lang"] = "en"
    return _encode(body)


def help_body(registry: str) -> bytes:
    """``/help``: conformance and the registry's notices."""
    searches = registry in search.SEARCH_REGISTRIES
    queries = "ip/<address>, ip/<prefix>/<length>" + (
        ", ips/rirSearch1/<relation>/<address, prefix/length or range>" if searches else "")
    notices = _registry_notices(registry) + [
        {"title": "Simulator", "description": [f"Simulated {registry} RDAP service: ip queries only ({queries})."]}]
    conformance = CONFORMANCE[registry] + (SEARCH_CONFORMANCE if searches else [])
    return _encode({"rdapConformance": conformance, "notices": notices})


def _relation_links(net: Network, base: str) -> list[dict[str, str]]:
    """RFC 9910 section 3.2 links, as RIPE lists them (each relation, and up/top for active status)."""
    links = []
    for rels, relation, query in (("rdap-up", "rdap-up", ""), ("rdap-up rdap-active", "rdap-up", "?status=active"),
                                  ("rdap-down", "rdap-down", ""), ("rdap-top", "rdap-top", ""),
                                  ("rdap-top rdap-active", "rdap-top", "?status=active"),
                                  ("rdap-bottom", "rdap-bottom", "")):
        href = search.relation_url(base, relation, net.registry, net.start, net.end) + query
        links.append({"value": _QUERY, "rel": rels, "href": href, "type": RDAP_CONTENT_TYPE})
    return links


def _search_notices(registry: str) -> list[dict[str, Any]]:
    """What a search answer carries: RIPE only its terms (mapCommonNoticesAndPort), ARIN its usual three."""
    if registry == "ripencc":
        return [n for n in _ripe_notices() if n["title"] == "Terms and Conditions"]
    return _arin_notices()


_RESULTS = b'"@@search-results@@"'


def search_body(registry: str, members: list[bytes], query_url: str, limit: int | None) -> bytes:
    """An RFC 9910 search answer around rendered members; ``limit`` set when the list was cut."""
    notices = ([{"title": f"limited search results to {limit} maximum"}] if limit is not None else [])
    notices += _search_notices(registry)
    body: dict[str, Any] = {"rdapConformance": CONFORMANCE[registry] + SEARCH_CONFORMANCE, "notices": notices}
    if registry == "ripencc":
        body["links"] = [{"value": query_url, "rel": "self", "href": query_url, "type": RDAP_CONTENT_TYPE},
                         {"value": _RIPE_COPYRIGHT, "rel": "copyright", "href": _RIPE_COPYRIGHT}]
        body["port43"] = PORT43[registry]
    body["ipSearchResults"] = _RESULTS.decode()[1:-1]
    rendered = _encode(body).replace(_QUERY_BYTES, query_url.encode())
    return rendered.replace(_RESULTS, b"[" + b",".join(members) + b"]")


def rate_limit_notice_body(limit: int, minutes: int) -> bytes:
    """LACNIC's answer past its limit: HTTP 200, a notice and no network."""
    return _encode({
        "rdapConformance": CONFORMANCE["lacnic"],
        "notices": [{"title": "Rate Limit Notice",
                     "description": [f"Rate Limit is maxed at {limit} queries per {minutes} minutes."]}],
    })


def html_error_page(status_line: str = "503 Service Temporarily Unavailable") -> bytes:
    """The kind of page a front proxy sends instead of RDAP (sometimes with 200)."""
    return (f"<!DOCTYPE html>\n<html><head><title>{status_line}</title></head>\n"
            f"<body><h1>{status_line}</h1><p>The server is temporarily unable to service your request. "
            "Please try again later.</p><hr><address>Apache Server</address></body></html>\n").encode()


class Renderer:
    """Network answers of one universe, per registry, with a small body cache."""

    def __init__(self, universe: Universe, base_urls: Mapping[str, str], cache_size: int = 4096) -> None:
        self.universe = universe
        self.base_urls = dict(base_urls)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_size = cache_size

    def network_dict(self, index: int, query_url: str, variant: str = "lookup") -> dict[str, Any]:
        """The answer as a dict (tests); the server uses ``network_body``."""
        return json.loads(self.network_body(index, query_url, variant))

    def network_body(self, index: int, query_url: str, variant: str = "lookup") -> bytes:
        """One network: ``lookup`` (an ip query), ``relation`` (an up/top search), ``member`` (in results)."""
        key = (index, variant)
        template = self._cache.get(key)
        if template is None:
            template = _encode(self._network(index, variant))
            self._cache[key] = template
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return template.replace(_QUERY_BYTES, query_url.encode())

    def _network(self, index: int, variant: str) -> dict[str, Any]:
        net = self.universe.network(index)
        base = self.base_urls[net.registry]
        body = _BUILDERS[net.registry](net, self.universe.identity_hash(index), base)
        if net.registry not in search.SEARCH_REGISTRIES:
            return body
        if variant == "member":  # RFC 9083 section 4.1: conformance and notices belong to the answer
            del body["rdapConformance"], body["notices"]
        elif variant == "relation":  # RIPE answers up/top like a lookup, without relation links
            body["rdapConformance"] = CONFORMANCE[net.registry] + SEARCH_CONFORMANCE
        else:
            body["rdapConformance"] = CONFORMANCE[net.registry] + LOOKUP_SEARCH_CONFORMANCE
            body["links"] = body["links"] + _relation_links(net, base)
        return body
