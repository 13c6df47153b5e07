"""The registry simulator server: five RDAP registries plus bootstrap and control.

One asyncio process, one listening port per registry (the base port + 1 + i
in the order of ``REGISTRIES``) and the base port for ``/bootstrap/ipv4.json``,
``/_stats`` and ``/_faults``.  Registries answer from the shared universe the
way the real ones do: the most specific network, redirects for space another
registry holds, RDAP errors, rate limits and blocks per client address, and
whatever faults are switched on.  ``SimulatorThread`` runs it in a background
thread for other modules' tests.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.settings import Settings
from whoiscrawl.simulator import delegated, responses, search
from whoiscrawl.simulator.bootstrap import bootstrap_document, write_bootstrap
from whoiscrawl.simulator.faults import Faults
from whoiscrawl.simulator.malformed import malform
from whoiscrawl.simulator.http import DROP, NEVER, HttpProtocol, Request, Response
from whoiscrawl.simulator.policy import PROFILE_LATENCY_MS, PROFILES, RateLimiter
from whoiscrawl.simulator.stats import Stats
from whoiscrawl.simulator.universe import Universe

#: Status of the redirect each registry sends for space another registry holds.
REDIRECT_STATUS = {"arin": 302, "ripencc": 301, "apnic": 301, "lacnic": 302, "afrinic": 307}
#: RDAP object classes that exist but are not simulated (RFC 7480: 501).
_UNSUPPORTED = ("autnum", "domain", "nameserver", "entity", "domains", "nameservers", "entities", "ips")
_RDAP = responses.RDAP_CONTENT_TYPE
_BAD_REQUEST = ["Request could not be understood, malformed syntax"]
_CONTROL_PATHS = ("/bootstrap/ipv4.json", "/_stats", "/_faults", "/_delegated")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it roughly doubles throughput), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def parse_ip_query(text: str) -> tuple[int, int] | None:
    """``a.b.c.d`` or ``a.b.c.d/len`` → (first, last); None if malformed.

    Strict like the registries: no leading zeros, no host bits past the prefix.
    """
    text = text.replace("%2F", "/").replace("%2f", "/")
    addr_text, slash, length_text = text.partition("/")
    parts = addr_text.split(".")
    if len(parts) != 4:
        return None
    addr = 0
    for part in parts:
        if not part.isdigit() or not part.isascii() or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            return None
        value = int(part)
        if value > 255:
            return None
        addr = (addr << 8) | value
    if not slash:
        return addr, addr
    if not length_text.isdigit() or not length_text.isascii() or len(length_text) > 2 \
            or (len(length_text) > 1 and length_text[0] == "0"):
        return None
    length = int(length_text)
    if length > 32:
        return None
    size = 1 << (32 - length)
    if addr & (size - 1):
        return None
    return addr, addr + size - 1


def parse_relation_key(text: str) -> tuple[int, int] | None:
    """A relation search key: an address, a prefix, or RIPE's ``first - last`` range handle."""
    text = text.replace("%20", " ")
    first_text, dash, last_text = text.partition(" - ")
    if not dash:
        return parse_ip_query(text)
    first, last = parse_ip_query(first_text), parse_ip_query(last_text)
    if first is None or last is None or "/" in first_text + last_text or first[0] > last[0]:
        return None
    return first[0], last[0]


class Simulator:
    """All listeners and the request handling; run inside one event loop."""

    def __init__(self, universe: Universe, host: str | None = None, base_port: int | None = None,
                 profile: str = "fast", faults: Faults | Mapping[str, Any] | None = None, seed: int = 1,
                 bootstrap_out: str | Path | None = None, url_host: str | None = None,
                 search_max_results: int = search.MAX_RESULTS, search_max_related: int = search.MAX_RELATED) -> None:
        settings = Settings()
        self._url_host = url_host
        if profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
        self.universe = universe
        self.host = settings.BIND_HOST if host is None else host
        self.base_port = settings.SIM_BASE_PORT if base_port is None else base_port
        self.profile = profile
        latency, jitter = PROFILE_LATENCY_MS[profile]
        default = Faults(latency_ms=latency, jitter_ms=jitter)
        if isinstance(faults, Faults):
            self.faults = faults
        else:
            self.faults = default.updated(faults or {})
        self.limiter = RateLimiter(dict(PROFILES[profile]))
        self.stats = Stats()
        self._rng = random.Random(seed)
        self._bootstrap_out = Path(bootstrap_out) if bootstrap_out else None
        self._servers: dict[str, asyncio.AbstractServer] = {}
        self._connections: dict[str, set[HttpProtocol]] = {name: set() for name in ("base", *REGISTRIES)}
        self.ports: dict[str, int] = {}
        self._base_urls: dict[str, str] | None = None
        self._renderer: responses.Renderer | None = None
        self._relations: search.Relations | None = None
        self.search_max_results = search_max_results
        self.search_max_related = search_max_related
        self._bootstrap_body = b""
        self._delegated_bodies: dict[str, bytes] = {}
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- addresses -------------------------------------------------------------
    @property
    def bootstrap_path(self) -> Path | None:
        """Where the bootstrap file was written (``bootstrap_out``), if anywhere."""
        return self._bootstrap_out

    @property
    def url_host(self) -> str:
        """The host its bootstrap file and redirects name (``url_host``, else where it listens)."""
        if self._url_host:
            return self._url_host
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    @property
    def base_urls(self) -> dict[str, str]:
        if self._base_urls is None:
            self._base_urls = {name: f"http://{self.url_host}:{self.ports[name]}/{name}/" for name in REGISTRIES}
        return self._base_urls

    @property
    def bootstrap_url(self) -> str:
        return f"http://{self.url_host}:{self.ports['base']}/bootstrap/ipv4.json"

    @property
    def delegated_urls(self) -> dict[str, str]:
        """Each registry's delegated-extended file, on its own port at the real path."""
        return {name: f"http://{self.url_host}:{self.ports[name]}{delegated.path(name)}" for name in REGISTRIES}

    # --- life cycle ------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        names = ("base", *REGISTRIES)
        for offset, name in enumerate(names):
            port = 0 if self.base_port == 0 else self.base_port + offset
            server = await self._listen(name, port)
            self.ports[name] = server.sockets[0].getsockname()[1]
        self._renderer = responses.Renderer(self.universe, self.base_urls)
        self._relations = search.Relations(self.universe)
        document = bootstrap_document(self.base_urls)
        self._bootstrap_body = (json.dumps(document, indent=2) + "\n").encode()
        if self._bootstrap_out is not None:
            write_bootstrap(self._bootstrap_out, document)
        await self._sync_listeners()

    async def stop(self) -> None:
        for name in list(self._servers):
            self._servers.pop(name).close()
        for conns in self._connections.values():
            for conn in list(conns):
                conn.close()
        await asyncio.sleep(0)

    async def _listen(self, name: str, port: int) -> asyncio.AbstractServer:
        handler = self._handle_base if name == "base" else self._registry_handler(name)
        conns = self._connections[name]

        def count_connection() -> None:
            self.stats.connections += 1

        server = await asyncio.get_running_loop().create_server(
            lambda: HttpProtocol(handler, conns, count_connection), self.host, port, reuse_address=True,
            backlog=1024)
        self._servers[name] = server
        return server

    async def _sync_listeners(self) -> None:
        """Close the ports of registries down in ``refuse`` mode, reopen the others."""
        for name in REGISTRIES:
            refuse = self.faults.down.get(name) == "refuse"
            if refuse and name in self._servers:
                self._servers.pop(name).close()
                for conn in list(self._connections[name]):
                    conn.close()
            elif not refuse and name not in self._servers:
                await self._listen(name, self.ports[name])

    # --- control -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"profile": self.profile, "faults": self.faults.to_dict(),
                "rate_limits": {name: policy.to_dict() for name, policy in self.limiter.policies.items()}}

    async def apply(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change faults and limits while running (body of ``POST /_faults``).

        Keys: the fault knobs (see ``Faults.updated``), ``profile`` (resets all
        rate limits to that profile's), ``rate_limits: {registry: {field: value}}``.
        """
        assert self._lock is not None
        async with self._lock:
            changes = dict(changes)
            profile = changes.pop("profile", None)
            limits = changes.pop("rate_limits", None) or {}
            faults = self.faults.updated(changes)  # validates before anything changes
            if profile is not None:
                if profile not in PROFILES:
                    raise ValueError(f"unknown profile {profile!r}")
            new_policies = {}
            for name, fields in dict(limits).items():
                if name not in REGISTRIES:
                    raise ValueError(f"unknown registry {name!r}")
                base = PROFILES[profile][name] if profile else self.limiter.policies[name]
                new_policies[name] = base.updated(fields)
            if profile is not None:
                self.profile = profile
                for name in REGISTRIES:
                    self.limiter.set_policy(name, PROFILES[profile][name])
            for name, policy in new_policies.items():
                self.limiter.set_policy(name, policy)
            self.faults = faults
            await self._sync_listeners()
            return self.config()

    # --- base port -------------------------------------------------------------
    def _handle_base(self, request: Request) -> Response | object:
        path = request.path
        self.stats.control[path if path in _CONTROL_PATHS else "other"] += 1
        if path == "/bootstrap/ipv4.json" and request.method == "GET":
            return Response(200, self._bootstrap_body, "application/json")
        if path == "/_stats" and request.method == "GET":
            return Response(200, json.dumps(self.stats.as_dict()).encode())
        if path == "/_delegated" and request.method == "GET":
            return Response(200, json.dumps(self.delegated_urls).encode())
        if path == "/_faults":
            if request.method == "GET":
                return Response(200, json.dumps(self.config()).encode())
            if request.method == "POST":
                try:
                    changes = json.loads(request.body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("body must be a JSON object")
                    # validate synchronously so that bad input is a 400, not a 500
                    self.faults.updated({k: v for k, v in changes.items() if k not in ("profile", "rate_limits")})
                except ValueError as exc:
                    return Response(400, json.dumps({"error": str(exc)}).encode())
                return self._apply_answer(changes)
            return Response(405, b"", headers=[("Allow", "GET, POST")])
        return Response(404, json.dumps({"error": "not found"}).encode())

    async def _apply_answer(self, changes: Mapping[str, Any]) -> Response:
        try:
            config = await self.apply(changes)
        except ValueError as exc:
            return Response(400, json.dumps({"error": str(exc)}).encode())
        return Response(200, json.dumps(config).encode())

    # --- registry ports --------------------------------------------------------
    def _registry_handler(self, registry: str):
        def handle(request: Request) -> Response | object:
            return self._handle_registry(registry, request)
        return handle

    def _handle_registry(self, registry: str, request: Request) -> Response | object:
        client = request.client
        stats = self.stats
        if request.path == delegated.path(registry) and request.method in ("GET", "HEAD"):
            # the real files come from the registries' FTP/HTTPS hosts: outside RDAP's limits and faults
            stats.control["delegated"] += 1
            return Response(200, self._delegated_body(registry), "text/plain; charset=us-ascii")
        stats.request(registry, client)
        knobs = self.faults.for_registry(registry)
        if knobs.down == "timeout":
            stats.outcome(registry, client, "unanswered")
            return NEVER
        if knobs.down == "refuse":  # a connection opened just before the port closed
            stats.outcome(registry, client, "dropped")
            return DROP
        assert self._loop is not None
        decision = self.limiter.check(registry, client, self._loop.time())
        if decision.verdict == "blocked":
            stats.outcome(registry, client, "blocked")
            if decision.block_started:
                stats.outcome(registry, client, "blocks")
            if self.limiter.policies[registry].block_style == "drop":
                stats.outcome(registry, client, "dropped")
                return DROP
            response = Response(403, responses.error_body(
                registry, 403, "Forbidden",
                [f"Too many requests: access from {client} is blocked for {decision.retry_after_s} seconds."]),
                _RDAP, [("Retry-After", str(decision.retry_after_s))])
            return self._finish(registry, client, response, knobs.latency_ms, knobs.jitter_ms)
        if decision.verdict == "limited":
            stats.outcome(registry, client, "rate_limited")
            if self.limiter.policies[registry].style == "notice":
                limit = decision.limit
                assert limit is not None
                minutes = max(1, round(limit.window_s / 60))
                response = Response(200, responses.rate_limit_notice_body(limit.queries, minutes), _RDAP)
            else:
                response = Response(429, responses.error_body(
                    registry, 429, "Too Many Requests",
                    ["Rate limit exceeded. Please wait before making further requests."]),
                    _RDAP, [("Retry-After", str(decision.retry_after_s))])
            return self._finish(registry, client, response, knobs.latency_ms, knobs.jitter_ms)

        rng = self._rng
        draw = rng.random() if (knobs.error_rate or knobs.html_rate) else 1.0
        if draw < knobs.error_rate:
            stats.outcome(registry, client, "server_errors")
            status = rng.choice((500, 502, 503, 504))
            if status in (500, 503):
                response = Response(status, responses.error_body(
                    registry, status, "Internal Server Error" if status == 500 else "Service Unavailable",
                    ["The server encountered an error, please try again later."]), _RDAP)
            else:
                response = Response(status, responses.html_error_page(f"{status} Gateway Error"), "text/html")
        elif draw < knobs.error_rate + knobs.html_rate:
            stats.outcome(registry, client, "html")
            response = Response(200, responses.html_error_page(), "text/html; charset=utf-8")
        else:
            response = self._answer(registry, request)
            if knobs.malformed and "/ip/" in request.path:
                stats.outcome(registry, client, "malformed")
                response = malform(knobs.malformed, response)
        if knobs.truncate_rate and len(response.body) > 1 and rng.random() < knobs.truncate_rate:
            stats.outcome(registry, client, "truncated")
            response.truncate_to = rng.randrange(1, len(response.body))
        return self._finish(registry, client, response, knobs.latency_ms, knobs.jitter_ms)

    def _delegated_body(self, registry: str) -> bytes:
        body = self._delegated_bodies.get(registry)
        if body is None:
            body = self._delegated_bodies[registry] = delegated.delegated_text(self.universe, registry).encode()
        return body

    def _finish(self, registry: str, client: str, response: Response, latency_ms: float,
                jitter_ms: float) -> Response:
        if latency_ms or jitter_ms:
            response.delay_s = (latency_ms + self._rng.random() * jitter_ms) / 1000.0
        response.headers.append(("Access-Control-Allow-Origin", "*"))
        self.stats.status(registry, client, response.status)
        return response

    def _error(self, registry: str, client: str, status: int, title: str, description: list[str]) -> Response:
        self.stats.outcome(registry, client, "not_found" if status == 404 else "bad_requests")
        return Response(status, responses.error_body(registry, status, title, description), _RDAP)

    def _answer(self, registry: str, request: Request) -> Response:
        client = request.client
        if request.method not in ("GET", "HEAD"):  # RFC 7480 section 4.1: HEAD tells whether data exists
            return Response(405, responses.error_body(registry, 405, "Method Not Allowed", ["Use GET or HEAD."]),
                            _RDAP, [("Allow", "GET, HEAD")])
        prefix = f"/{registry}/"
        path = request.path
        if not path.startswith(prefix):
            return self._error(registry, client, 404, "Not Found", [f"Unknown path {path}"])
        rest = path[len(prefix):]
        if rest in ("help", "help/"):
            return Response(200, responses.help_body(registry), _RDAP)
        kind, _, query = rest.partition("/")
        if kind == "ips" and registry in search.SEARCH_REGISTRIES and query.startswith("rirSearch1/"):
            return self._relation_search(registry, request, query[len("rirSearch1/"):])
        if kind != "ip":
            if kind in _UNSUPPORTED:
                return Response(501, responses.error_body(registry, 501, "Not Implemented",
                                                          [f"{kind} queries are not supported"]), _RDAP)
            return self._error(registry, client, 400, "Bad Request", _BAD_REQUEST)
        bounds = parse_ip_query(query)
        if bounds is None:
            return self._error(registry, client, 400, "Bad Request", _BAD_REQUEST)
        first, last = bounds
        index = self.universe.lookup_range(first, last)
        elsewhere = self._held_elsewhere(registry, client, first, index, f"ip/{query}")
        if elsewhere is not None:
            return elsewhere
        if index is not None:
            assert self._renderer is not None
            body = self._renderer.network_body(index, f"{self.base_urls[registry]}ip/{query}")
            return Response(200, body, _RDAP)
        return self._error(registry, client, 404, "Not Found", [f"No network found for {query}"])

    def _held_elsewhere(self, registry: str, client: str, first: int, index: int | None,
                        path: str) -> Response | None:
        """The answer when ``registry`` does not hold the range: a redirect to its holder, or 404 for
        reserved space; None when ``registry`` is the one to answer."""
        universe = self.universe
        if index is not None:
            holder = universe.registry_of(index)
        elif universe.is_reserved(first):
            return self._error(registry, client, 404, "Not Found", ["Reserved address space (IANA)"])
        else:
            holder = universe.owner(first) or universe.bootstrap_registry(first)
        if holder is None or holder == registry:
            return None
        self.stats.outcome(registry, client, "redirects")
        return Response(REDIRECT_STATUS[registry], b"", _RDAP, [("Location", f"{self.base_urls[holder]}{path}")])


    def _relation_search(self, registry: str, request: Request, rest: str) -> Response:
        """RFC 9910 relation search (see ``search``); errors worded as RIPE's server words them."""
        client = request.client
        relation, _, key = rest.partition("/")
        if relation not in search.RELATIONS:
            return self._error(registry, client, 400, "Bad Request", [f"Relation {relation} doesn't exist"])
        status = parse_qs(request.target.partition("?")[2]).get("status")
        if status:
            reason = ("Status is not implement in down and bottom relation" if relation not in search.SINGLE_RELATIONS
                      else None if status[0].lower() == "active" else f"{status[0]} status is not implemented")
            if reason:
                return Response(501, responses.error_body(registry, 501, "Not Implemented", [reason]), _RDAP)
        bounds = parse_relation_key(key)
        if bounds is None:
            return self._error(registry, client, 400, "Bad Request", _BAD_REQUEST)
        first, last = bounds
        index = self.universe.lookup_range(first, last)
        elsewhere = self._held_elsewhere(registry, client, first, index, f"ips/rirSearch1/{rest}")
        if elsewhere is not None:
            return elsewhere
        relations, renderer = self._relations, self._renderer
        assert relations is not None and renderer is not None
        shown_key = key.replace("%20", " ")
        if not relations.holds_any(registry, first, last):
            return self._error(registry, client, 404, "Not Found", [f"No network found for {shown_key}"])
        query_url = f"http://{self.url_host}:{self.ports[registry]}{request.target}"
        if relation in search.SINGLE_RELATIONS:
            found = (relations.up if relation == "rdap-up" else relations.top)(registry, first, last)
            if found is None:
                level = "up level" if relation == "rdap-up" else "top-level"
                return self._error(registry, client, 404, "Not Found",
                                   [f"No {level} object has been found for {shown_key}"])
            return Response(200, renderer.network_body(found, query_url, "relation"), _RDAP)
        related = None
        if relation == "rdap-down" or relations.bottom_at_least(registry, first, last) <= self.search_max_related:
            related = (relations.down if relation == "rdap-down" else relations.bottom)(registry, first, last)
        if related is None or related.shape[0] > self.search_max_related:
            return self._error(registry, client, 400, "Too Many Rows", ["The result size is too large"])
        limit = self.search_max_results if related.shape[0] > self.search_max_results else None
        members = [renderer.network_body(i, query_url, "member") for i in related[:self.search_max_results].tolist()]
        return Response(200, responses.search_body(registry, members, query_url, limit), _RDAP)


class SimulatorThread:
    """The simulator in a background thread with its own event loop (for tests).

    ``with SimulatorThread(universe) as sim:`` gives ``sim.bootstrap_url``,
    ``sim.bootstrap_path`` (a file in a temporary folder), ``sim.base_urls``,
    ``sim.stats()`` and ``sim.set_faults(...)``.  Ports are free ones unless
    ``base_port`` is set.
    """

    def __init__(self, universe: Universe, host: str = "127.0.0.1", base_port: int = 0, profile: str = "fast",
                 faults: Faults | Mapping[str, Any] | None = None, seed: int = 1,
                 start_timeout_s: float = 30.0, search_max_results: int = search.MAX_RESULTS,
                 search_max_related: int = search.MAX_RELATED) -> None:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="whoiscrawl-sim-"))
        self.bootstrap_path = self._tmpdir / "ipv4.json"
        self.simulator = Simulator(universe, host=host, base_port=base_port, profile=profile, faults=faults,
                                   seed=seed, bootstrap_out=self.bootstrap_path,
                                   search_max_results=search_max_results, search_max_related=search_max_related)
        self._timeout = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    # --- context manager ---------------------------------------------------------
    def __enter__(self) -> "SimulatorThread":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registry-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise TimeoutError("simulator did not start in time")
        if self._error is not None:
            self.stop()
            raise RuntimeError(f"simulator failed to start: {self._error}") from self._error

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _run(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.simulator.start()
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.simulator.stop()

    # --- what tests use -----------------------------------------------------------
    @property
    def bootstrap_url(self) -> str:
        return self.simulator.bootstrap_url

    @property
    def base_urls(self) -> dict[str, str]:
        return self.simulator.base_urls

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.simulator.ports)

    @property
    def delegated_urls(self) -> dict[str, str]:
        return self.simulator.delegated_urls

    def _call(self, coro_factory, timeout_s: float = 10.0):
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_factory(), self._loop).result(timeout_s)

    def stats(self) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            return self.simulator.stats.as_dict()
        return self._call(read)

    def set_faults(self, changes: Mapping[str, Any] | None = None, **knobs: Any) -> dict[str, Any]:
        """Same keys as ``POST /_faults``; returns the resulting configuration."""
        merged = dict(changes or {}) | knobs
        return self._call(lambda: self.simulator.apply(merged))
