"""Fault knobs: what can go wrong between a crawler and a registry.

Set at start (CLI flags, ``SimulatorThread(faults=...)``) and changed while
running (``POST /_faults`` on the base port, ``SimulatorThread.set_faults``),
because tests need a registry to go down and come back during a run.
Rates and latency apply to every registry unless ``per_registry`` overrides them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping

from whoiscrawl.crawl.registries import REGISTRIES

DOWN_MODES = ("refuse", "timeout")  # not listening / accepts and never answers
#: Malformed answers a registry can give to every IP query (``malformed: {registry: kind}``);
#: simulator/malformed.py renders them.
MALFORMED_KINDS = (
    # JSON shapes the parser must survive
    "notices_not_list", "roles_not_strings", "entities_not_list", "deep_json", "huge_record",
    # HTTP the client must survive
    "oversized_header", "bad_status_line", "bad_content_length", "bad_chunking", "non_http",
    "bad_location_port", "ipv6_location", "retry_after_overflow", "gzip_bomb", "endless_chunked",
)
_RATE_FIELDS = ("error_rate", "truncate_rate", "html_rate")
_TIME_FIELDS = ("latency_ms", "jitter_ms")
_FIELDS = _RATE_FIELDS + _TIME_FIELDS


@dataclass(frozen=True)
class Effective:
    """Knobs resolved for one registry."""

    latency_ms: float
    jitter_ms: float
    error_rate: float
    truncate_rate: float
    html_rate: float
    down: str | None
    malformed: str | None = None


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0      # share of answers replaced by a 5xx
    truncate_rate: float = 0.0   # share of bodies cut short (connection closed mid-body)
    html_rate: float = 0.0       # share of answers replaced by an HTML page with status 200
    down: dict[str, str] = field(default_factory=dict)             # registry -> refuse | timeout
    malformed: dict[str, str] = field(default_factory=dict)        # registry -> one of MALFORMED_KINDS
    per_registry: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_registry(self, registry: str) -> Effective:
        own = self.per_registry.get(registry, {})
        return Effective(
            latency_ms=own.get("latency_ms", self.latency_ms),
            jitter_ms=own.get("jitter_ms", self.jitter_ms),
            error_rate=own.get("error_rate", self.error_rate),
            truncate_rate=own.get("truncate_rate", self.truncate_rate),
            html_rate=own.get("html_rate", self.html_rate),
            down=self.down.get(registry),
            malformed=self.malformed.get(registry),
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS} | {
            "down": dict(self.down), "malformed": dict(self.malformed),
            "per_registry": copy.deepcopy(self.per_registry)}

    def updated(self, changes: Mapping[str, Any]) -> "Faults":
        """A validated copy with changes applied.

        ``down`` maps registries to ``refuse``/``timeout``, or to null/``up`` to
        bring them back; ``up`` lists registries to bring back.  Other keys are
        the numeric knobs, or ``per_registry: {reg: {knob: value}}``; ``malformed`` maps registries to
        a kind of malformed answer (``MALFORMED_KINDS``) or null.
        """
        new = copy.deepcopy(self)
        for key, value in changes.items():
            if key in _FIELDS:
                setattr(new, key, _check_number(key, value))
            elif key == "down":
                for registry, mode in dict(value).items():
                    _check_registry(registry)
                    if mode in (None, "up", ""):
                        new.down.pop(registry, None)
                    elif mode in DOWN_MODES:
                        new.down[registry] = mode
                    else:
                        raise ValueError(f"down mode must be one of {DOWN_MODES} or null, not {mode!r}")
            elif key == "malformed":
                for registry, kind in dict(value).items():
                    _check_registry(registry)
                    if kind in (None, ""):
                        new.malformed.pop(registry, None)
                    elif kind in MALFORMED_KINDS:
                        new.malformed[registry] = kind
                    else:
                        raise ValueError(f"malformed kind must be one of {MALFORMED_KINDS} or null, not {kind!r}")
            elif key == "up":
                for registry in value:
                    _check_registry(registry)
                    new.down.pop(registry, None)
            elif key == "per_registry":
                for registry, knobs in dict(value).items():
                    _check_registry(registry)
                    own = new.per_registry.setdefault(registry, {})
                    for knob, number in dict(knobs or {}).items():
                        if knob not in _FIELDS:
                            raise ValueError(f"unknown fault knob {knob!r}")
                        if number is None:
                            own.pop(knob, None)
                        else:
                            own[knob] = _check_number(knob, number)
                    if not own:
                        new.per_registry.pop(registry, None)
            else:
                raise ValueError(f"unknown fault setting {key!r}")
        return new


def parse_down(spec: str) -> tuple[str, str]:
    """CLI form ``REG`` or ``REG:refuse`` / ``REG:timeout`` (default refuse)."""
    registry, _, mode = spec.partition(":")
    mode = mode or "refuse"
    _check_registry(registry)
    if mode not in DOWN_MODES:
        raise ValueError(f"down mode must be one of {DOWN_MODES}, not {mode!r}")
    return registry, mode


def _check_registry(registry: str) -> None:
    if registry not in REGISTRIES:
        raise ValueError(f"unknown registry {registry!r} (one of {', '.join(REGISTRIES)})")


def _check_number(name: str, value: Any) -> float:
    number = float(value)
    if number < 0 or (name in _RATE_FIELDS and number > 1):
        raise ValueError(f"{name} out of range: {value!r}")
    return number
