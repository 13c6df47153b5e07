"""The run config: every crawl tunable of one run, typed and frozen.

The configure task builds it once (``WHOISCRAWL_*`` environment of the
coordinator, then the DAG's Params), writes it to the run's state in Redis,
and every chunk on every host crawls with exactly that config: a worker's own
environment can no longer make it crawl differently from the run it belongs
to. ``coverage.json`` records it. The settings table of the README lists these
fields as the crawl settings (``WHOISCRAWL_`` + the field name in capitals).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from whoiscrawl.errors import WhoiscrawlError
from whoiscrawl.settings import PREFIX


class ConfigError(WhoiscrawlError, ValueError):
    """A run config value or document that cannot be used."""


#: Crawl strategies: the planned one (the default) and the ancestor's, kept as the baseline.
STRATEGIES = ("planned", "classic")


def _tunable(default: Any, doc: str, env: str = "") -> Any:
    """A field with its doc; ``env`` names its variable when it is not the field's name in capitals."""
    return field(default=default, metadata={"doc": doc, "env": env})


def env_name(f: Any) -> str:
    """The environment variable of a run config field, without the prefix."""
    return f.metadata.get("env") or f.name.upper()


@dataclass(frozen=True)
class RunConfig:
    """What a crawl does and how politely; one value per run, the same on every host."""

    bootstrap: str = _tunable(
        "", "RFC 9224 IPv4 bootstrap file (path or http(s) URL). Empty: IANA's file as last fetched by "
            "`whoiscrawl bootstrap refresh`, else the copy shipped in the package. The configure task "
            "resolves it once; every host routes with that one document.")
    bootstrap_max_age_s: int = _tunable(
        86400, "How long a bootstrap file fetched over HTTP is cached before it is fetched again.")
    results_topic: str = _tunable("results", "Topic for result records, keyed by network handle.",
                                  env="KAFKA_RESULTS_TOPIC")
    metrics_topic: str = _tunable("metrics", "Topic for per-host telemetry reports.", env="KAFKA_METRICS_TOPIC")
    http_timeout_s: float = _tunable(10.0, "Timeout of one RDAP request, connect to last byte.")
    http_concurrency_per_registry: int = _tunable(
        8, "Lookups in flight at once per registry per crawl process (registries never wait on each other).")
    user_agent: str = _tunable("whoiscrawl/0.1 (RDAP IPv4 survey)", "User-Agent sent with every RDAP request.")
    rate_limits: str = _tunable(
        "", "Per-registry request budgets per source host, e.g. 'lacnic=10/60+1000/3600,arin=10/1' "
            "(count/seconds, '+' joins windows). Registries not named keep the defaults: LACNIC 10 per "
            "minute and 1,000 per hour (documented), the others 10 per second (the ancestor's).")
    throttle_pause_s: float = _tunable(
        60.0, "Pause of a registry on this host after a 429 without Retry-After, or a rate-limit notice "
              "that names no window.")
    max_throttles: int = _tunable(
        20, "Throttle answers (429, rate-limit notice) one address may meet before it is failed.")
    max_redirects: int = _tunable(3, "Redirects followed for one lookup (RFC 7480 section 5.2).")
    redirect_allowlist: str = _tunable(
        "", "Extra hosts (comma-separated host or host:port) a redirect may go to, beside those in the "
            "bootstrap file.")
    max_attempts: int = _tunable(
        4, "Attempts per address before it is reported failed (timeouts, 5xx, bad bodies).")
    retry_backoff_s: float = _tunable(1.0, "First retry delay; doubles on each attempt, with jitter.")
    registry_down_after: int = _tunable(
        10, "Transport failures in a row (timeouts, refused connections) after which a registry counts as down.")
    registry_down_cooldown_s: float = _tunable(
        30.0, "While a registry is down its addresses wait this long per attempt instead of each timing out; "
              "then requests probe it again.")
    retry_after_max_s: float = _tunable(
        600.0, "Longest Retry-After pause honoured; longer ones fail the address for a later run.")
    telemetry_interval_s: float = _tunable(60.0, "How often each host reports its counters to the metrics topic.")
    registry_names: str = _tunable(
        "", "Names of registries reached through hosts that are not the registries' own (mirrors, proxies): "
            "comma-separated host[:port]=name, e.g. 'rdap-mirror.example:8443=arin'. Unnamed unknown hosts are "
            "named host:port.")
    max_body_bytes: int = _tunable(
        1 << 20, "Largest RDAP answer read, after decompression (bytes); a longer one fails the address "
                 "(`body_too_large`) instead of filling memory.")
    max_record_bytes: int = _tunable(
        900_000, "Largest result record sent to Kafka (bytes, below the broker's message.max.bytes); a longer "
                 "one is sent without its raw answer, and failed (`record_too_large`) if still too long.")
    chunk_deadline_s: float = _tunable(
        18000.0, "Seconds a chunk crawls before it stops taking new lookups and hands its unfinished addresses "
                 "on as a continuation (reported `deferred`); below the crawl task's execution_timeout.")
    strategy: str = _tunable(
        "planned", "`planned`: plan from the registries' delegated files, walk allocations with RFC 9910 "
                   "relation searches where offered and gap probes elsewhere, then answer the seed from what "
                   "was found; `classic`: the ancestor's shuffled seed lookups, skipping known networks.")
    delegated_urls: str = _tunable(
        "", "Delegated-extended statistics files per registry, 'registry=url,...' over the real RIRs' "
            "files (e.g. 'lacnic=http://host/pub/stats/lacnic/delegated-lacnic-extended-latest'); "
            "'registry=' for none (its plan falls back to its bootstrap ranges).")
    plan_probe_budget: int = _tunable(
        20000, "Address probes per registry per run for registries without relation searches, spread over "
               "its allocations by size.")
    plan_allocations_per_registry: int = _tunable(
        0, "Plan only the N largest allocations of each registry (0: all of them); the seed's addresses "
           "elsewhere are looked up one by one. For demos and partial runs.")
    plan_probe_split: int = _tunable(
        8, "Halvings of a network's gap probed before its unprobed addresses are left to the seed's lookups.")
    plan_coverage_first: int = _tunable(
        1, "1: every registry's allocations are queried before any registry walks inside them (the fewest "
           "queries to each coverage level); 0: each registry walks as soon as its own allocations are "
           "known (the shortest time when registries' budgets differ, e.g. LACNIC's 1,000 an hour).")
    plan_search_group: int = _tunable(
        64, "Consecutive allocations a relation search asks as one range (RFC 9910 registries): fewer "
            "queries per allocation; a refused answer is split at an allocation boundary.")
    skip_known_networks: int = _tunable(
        1, "1: an address inside a network this run already found is skipped (the crawl); 0: every address "
           "is looked up (a re-crawl, whose probes of children must not be hidden by their parents).")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = _KINDS[f.name]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))
            elif not isinstance(value, kind) or isinstance(value, bool):
                raise ConfigError(f"run config {f.name}={value!r}: expected {kind.__name__}")
        for name in ("http_timeout_s", "http_concurrency_per_registry", "max_attempts", "max_redirects",
                     "registry_down_after", "telemetry_interval_s", "max_body_bytes", "max_record_bytes",
                     "chunk_deadline_s", "plan_search_group"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"run config {name}={getattr(self, name)!r}: must be > 0")
        for name in ("throttle_pause_s", "retry_backoff_s", "registry_down_cooldown_s", "retry_after_max_s",
                     "max_throttles", "bootstrap_max_age_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"run config {name}={getattr(self, name)!r}: must be >= 0")
        for name in ("plan_coverage_first", "skip_known_networks"):
            if getattr(self, name) not in (0, 1):
                raise ConfigError(f"run config {name}={getattr(self, name)!r}: 0 or 1")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"run config strategy={self.strategy!r}: one of {', '.join(STRATEGIES)}")
        if min(self.plan_probe_budget, self.plan_probe_split, self.plan_allocations_per_registry) < 0:
            raise ConfigError("run config plan_probe_budget, plan_probe_split, plan_allocations_per_registry must be >= 0")
        from whoiscrawl.crawl.ratelimit import RateLimits
        from whoiscrawl.crawl.strategy.sources import parse_urls

        try:
            parse_urls(self.delegated_urls)
        except ValueError as exc:
            raise ConfigError(f"run config delegated_urls: {exc}") from None
        try:
            RateLimits.parse(self.rate_limits)
        except ValueError as exc:
            raise ConfigError(f"run config rate_limits: {exc}") from None

    # --- building -----------------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, strict: bool = True) -> "RunConfig":
        """From a mapping of field names (any case); text values are parsed to the field's type."""
        known = {f.name for f in fields(cls)}
        out: dict[str, Any] = {}
        for name, value in values.items():
            key = name.lower()
            if key not in known:
                if strict:
                    raise ConfigError(f"run config: unknown field {name!r}")
                continue
            out[key] = parse_value(key, value) if isinstance(value, str) else value
        return cls(**out)

    @classmethod
    def from_env(cls, overrides: Mapping[str, Any] | None = None,
                 environ: Mapping[str, str] | None = None) -> "RunConfig":
        """``WHOISCRAWL_<FIELD>`` variables over the defaults, then ``overrides`` (Params, tests)."""
        import os

        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + env_name(f))
            if raw is not None:
                try:
                    values[f.name] = parse_value(f.name, raw)
                except ConfigError as exc:
                    raise ConfigError(f"{PREFIX}{env_name(f)}={raw!r}: {exc}") from None
        return cls.from_values(values).with_overrides(overrides or {})

    def with_overrides(self, overrides: Mapping[str, Any]) -> "RunConfig":
        """A copy with some fields replaced (a DAG Param, a test); empty values keep the current one."""
        given = {k: v for k, v in overrides.items() if v not in (None, "")}
        return replace(self, **RunConfig.from_values({**self.as_dict(), **given}).as_dict())

    # --- the run's record ---------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "RunConfig":
        """Exactly the fields this code knows: a config written by other code is refused, not guessed."""
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"run config is not JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError("run config is not a JSON object")
        missing = {f.name for f in fields(cls)} - set(values)
        if missing:
            raise ConfigError(f"run config lacks {', '.join(sorted(missing))} (written by other code?)")
        return cls.from_values(values)

    def rate_limit_table(self):
        from whoiscrawl.crawl.ratelimit import RateLimits

        return RateLimits.parse(self.rate_limits)


_KINDS: dict[str, type] = {f.name: {"str": str, "int": int, "float": float}[str(f.type)] for f in fields(RunConfig)}


def parse_value(name: str, text: str) -> Any:
    """A field's value from text (environment variable, form field)."""
    kind = _KINDS[name]
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"run config {name}={text!r}: expected {kind.__name__}") from None


def tunables() -> list[tuple[str, Any, str]]:
    """(variable without prefix, default, doc) of every crawl tunable, in definition order (the settings table)."""
    return [(env_name(f), f.default if f.default is not MISSING else None, f.metadata["doc"]) for f in fields(RunConfig)]
