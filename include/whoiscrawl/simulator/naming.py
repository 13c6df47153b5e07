"""How each registry names things: network handles, types, and made-up holders.

Handles follow the real formats (ARIN ``NET-3-0-0-0-1``; RIPE, APNIC and
AFRINIC range strings; LACNIC CIDR strings).  Names and contacts are not stored
per network: they are derived from a hash of the network's range, so that the
universe stays a handful of numeric arrays and every answer is reproducible.
"""

from __future__ import annotations

_OCTETS = tuple(str(i) for i in range(256))

#: Kinds of network (stored per network as a small code).
KIND_ALLOCATION, KIND_ASSIGNMENT, KIND_SUBALLOCATION, KIND_SUBASSIGNMENT, KIND_LEGACY = range(5)

#: ``type`` strings per registry and kind, as the registries spell them.
TYPE_NAMES: dict[str, tuple[str, ...]] = {
    "arin": ("DIRECT ALLOCATION", "DIRECT ASSIGNMENT", "REALLOCATION", "REASSIGNMENT", "DIRECT ALLOCATION"),
    "ripencc": ("ALLOCATED PA", "ASSIGNED PI", "SUB-ALLOCATED PA", "ASSIGNED PA", "LEGACY"),
    "apnic": ("ALLOCATED PORTABLE", "ASSIGNED PORTABLE", "ALLOCATED NON-PORTABLE",
              "ASSIGNED NON-PORTABLE", "ALLOCATED PORTABLE"),
    "lacnic": ("allocated", "assigned", "reallocated", "reassigned", "allocated"),
    "afrinic": ("ALLOCATED PA", "ASSIGNED PI", "SUB-ALLOCATED PA", "ASSIGNED PA", "ALLOCATED PA"),
}

#: The whole-space block RIPE names as parent of legacy space.
ALL_SPACE_RANGE = "0.0.0.0 - 255.255.255.255"


def dotted(addr: int) -> str:
    return f"{_OCTETS[addr >> 24]}.{_OCTETS[(addr >> 16) & 255]}.{_OCTETS[(addr >> 8) & 255]}.{_OCTETS[addr & 255]}"


def dashed(addr: int) -> str:
    return f"{addr >> 24}-{(addr >> 16) & 255}-{(addr >> 8) & 255}-{addr & 255}"


def first_cidr_length(start: int, end: int) -> int:
    """Prefix length of the first aligned CIDR block of [start, end]."""
    low = (start & -start) if start else 1 << 32
    size = min(low, 1 << ((end - start + 1).bit_length() - 1))
    return 33 - size.bit_length()


def network_handle(registry: str, start: int, end: int, level: int) -> str:
    """The handle a registry gives a network.

    ARIN numbers the nets that begin at one address (``-0`` is the IANA block,
    ``-1`` the direct allocation, then one more per level of reassignment).
    """
    if registry == "arin":
        return f"NET-{dashed(start)}-{level + 1}"
    if registry == "lacnic":
        return f"{dotted(start)}/{first_cidr_length(start, end)}"
    return f"{dotted(start)} - {dotted(end)}"


def top_parent_handle(registry: str, start: int, end: int, legacy: bool) -> str | None:
    """parentHandle of a top-level allocation: the registry's IANA block.

    That block is not itself a network of the universe (space inside it that
    nobody holds answers 404), but the real registries name it this way.
    """
    octet = start >> 24
    if registry == "arin":
        return f"NET-{octet}-0-0-0-0"
    if registry == "lacnic":
        return None
    slash8 = f"{octet}.0.0.0 - {octet}.255.255.255"
    if (registry == "ripencc" and legacy) or slash8 == f"{dotted(start)} - {dotted(end)}":
        return ALL_SPACE_RANGE
    return slash8


def mix(*values: int) -> int:
    """A 64-bit hash of a few ints (splitmix64 steps), stable across runs."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = h * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h


_WORDS = ("ALPHA", "ATLAS", "AURORA", "BLUE", "BRIDGE", "CABLE", "CAPITAL", "CEDAR", "CITY", "CLOUD",
          "COAST", "COMET", "CORE", "CROWN", "DATA", "DELTA", "DIGI", "EAGLE", "EAST", "ECHO", "EDGE",
          "FIBER", "FIRST", "FUSION", "GALAXY", "GLOBAL", "GOLD", "GREEN", "HARBOR", "HIGH", "HOST",
          "INFO", "IRON", "JADE", "LAKE", "LINK", "LOGIC", "LUNA", "MAPLE", "MEGA", "METRO", "MOUNT",
          "NET", "NEXUS", "NORTH", "NOVA", "OCEAN", "OMEGA", "OPTI", "ORBIT", "PACIFIC", "PEAK", "PIXEL",
          "POLAR", "PRIME", "PULSE", "QUANTUM", "RAPID", "RIVER", "ROCK", "SAGE", "SILVER", "SKY",
          "SOLAR", "SOUTH", "SPARK", "STAR", "STONE", "SUN", "SWIFT", "TELE", "TERRA", "TITAN", "TOWER",
          "TRANS", "UNITY", "VALLEY", "VECTOR", "VISTA", "WAVE", "WEST", "WIND", "WIRE", "ZEN", "ZEPHYR")
_SUFFIXES = ("NET", "TEL", "COM", "LAN", "IX", "ISP", "HOST", "DC", "BB", "CORP")
_COMPANY_TAILS = ("Networks", "Telecom", "Communications", "Internet", "Data Center", "Broadband",
                  "Hosting", "Technologies", "Cable", "Online")
_LEGAL = {"arin": ("Inc.", "LLC", "Corp."), "ripencc": ("B.V.", "GmbH", "Ltd", "S.A.", "AB"),
          "apnic": ("Pty Ltd", "Co., Ltd.", "Limited", "Pvt Ltd"),
          "lacnic": ("S.A.", "S.R.L.", "LTDA", "S.A. de C.V."),
          "afrinic": ("(Pty) Ltd", "Ltd", "SARL", "PLC")}
_GIVEN = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ines", "Jonas", "Kofi",
          "Lena", "Marco", "Nadia", "Omar", "Priya", "Rui", "Sara", "Tomas", "Ume", "Vera", "Wei",
          "Yusuf", "Zoe")
_FAMILY = ("Almeida", "Baker", "Costa", "Dlamini", "Evans", "Fischer", "Garcia", "Hansen", "Ito",
           "Jansen", "Kumar", "Lopez", "Mensah", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
           "Silva", "Tanaka", "Ueda", "Virtanen", "Wong", "Yilmaz")


def salted(h: int, salt: int) -> int:
    """A cheap second hash of h (one multiply-xorshift round), for many small picks."""
    x = ((h ^ (salt * 0x9E3779B97F4A7C15)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 29)


def pick(seq: tuple, h: int, salt: int = 0):
    return seq[salted(h, salt) % len(seq)]


def org_token(h: int) -> str:
    """Short upper-case organisation token, e.g. ``SKYWAVE``."""
    return pick(_WORDS, h, 1) + pick(_WORDS, h, 2)


def org_name(registry: str, h: int) -> str:
    """A company name, e.g. ``Skywave Networks Ltd``."""
    token = org_token(h)
    return f"{token.title()} {pick(_COMPANY_TAILS, h, 3)} {pick(_LEGAL[registry], h, 4)}"


def person_name(h: int) -> tuple[str, str]:
    return pick(_GIVEN, h, 5), pick(_FAMILY, h, 6)


def network_name(registry: str, h: int, country: str, level: int) -> str:
    """netname as each registry tends to write it (``SWITCH-LAN``, ``APNIC-LABS``, ``CHIX``)."""
    token = org_token(h)
    if registry == "arin":
        return token if level == 0 else f"{token}-{salted(h, 7) % 99 + 1}"
    if registry == "ripencc":
        return f"{token}-{pick(_SUFFIXES, h, 8)}" if level else f"{country}-{token}-{salted(h, 9) % 9000 + 1000}"
    if registry == "apnic":
        return f"{token}-{country}"
    return f"{token}-{pick(_SUFFIXES, h, 8)}"
