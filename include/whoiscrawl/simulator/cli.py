"""Command line of the registry simulator (``python -m whoiscrawl.simulator``).

Prints exactly one line, ``ready <bootstrap_url>``, on stdout once every port
listens (scripts wait for it), logs to stderr, and exits 0 on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

import numpy as np

from whoiscrawl.crawl import ipspace
from whoiscrawl.settings import Settings
from whoiscrawl.simulator.faults import Faults, parse_down
from whoiscrawl.simulator.policy import PROFILE_LATENCY_MS, PROFILES
from whoiscrawl.simulator.server import Simulator, new_event_loop
from whoiscrawl.simulator.mutate import mutate, parse_spec
from whoiscrawl.simulator.universe import build_universe

log = logging.getLogger("whoiscrawl.simulator")


def build_parser() -> argparse.ArgumentParser:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m whoiscrawl.simulator",
                                     description="Simulated RDAP registries (ARIN, RIPE NCC, APNIC, LACNIC, AFRINIC).")
    parser.add_argument("--host", default=settings.BIND_HOST, help="address to listen on")
    parser.add_argument("--url-host", default=None,
                        help="host named in its bootstrap file and redirects (default: the listening address)")
    parser.add_argument("--base-port", type=int, default=settings.SIM_BASE_PORT,
                        help="bootstrap and stats port; the registries listen on the next five (0: any free ports)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="fast",
                        help="rate limits and latency: fast (none) or realistic (the registries' own)")
    parser.add_argument("--seed", type=int, default=1, help="universe seed")
    parser.add_argument("--scale", type=float, default=1.0, help="universe size (1.0: about 5M networks)")
    parser.add_argument("--cache-dir", default=None, help="folder for the built universe (.npz)")
    parser.add_argument("--bootstrap-out", default=None, help="also write the bootstrap file here")
    parser.add_argument("--latency-ms", type=float, default=None, help="fixed latency before each answer")
    parser.add_argument("--jitter-ms", type=float, default=None, help="random extra latency, up to this")
    parser.add_argument("--down", action="append", default=[], metavar="REG[:refuse|timeout]",
                        help="start with a registry down (repeatable)")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of answers replaced by a 5xx")
    parser.add_argument("--truncate-rate", type=float, default=0.0, help="share of bodies cut short")
    parser.add_argument("--html-rate", type=float, default=0.0, help="share of answers that are HTML with 200")
    parser.add_argument("--export-truth", default=None, help="write every network as TSV to this file")
    parser.add_argument("--mutate", default=None, metavar="SEED:N",
                        help="change N leaf networks (reassign, transfer, delete in turn) to test re-crawls")
    parser.add_argument("--mutate-only", default=None, metavar="FILE",
                        help="with --mutate: change only networks holding an address of FILE (one per line)")
    parser.add_argument("--mutations-out", default=None, help="write the --mutate changes as JSON to this file")
    return parser


def faults_from_args(args: argparse.Namespace) -> Faults:
    latency, jitter = PROFILE_LATENCY_MS[args.profile]
    down = dict(parse_down(spec) for spec in args.down)
    return Faults().updated({
        "latency_ms": latency if args.latency_ms is None else args.latency_ms,
        "jitter_ms": jitter if args.jitter_ms is None else args.jitter_ms,
        "error_rate": args.error_rate, "truncate_rate": args.truncate_rate, "html_rate": args.html_rate,
        "down": down,
    })


async def _serve(simulator: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start()
    sys.stdout.write(f"ready {simulator.bootstrap_url}\n")
    sys.stdout.flush()
    log.info("bootstrap file: %s (also served at %s)",
             simulator.bootstrap_path or "not written (no --bootstrap-out)", simulator.bootstrap_url)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        faults = faults_from_args(args)
        mutation = parse_spec(args.mutate) if args.mutate else None
    except ValueError as exc:
        parser.error(str(exc))
    t0 = time.perf_counter()
    universe = build_universe(seed=args.seed, scale=args.scale, cache_dir=args.cache_dir)
    log.info("universe: %d networks, %d delegated records, ready in %.1f s",
             len(universe), universe.allocation_count(), time.perf_counter() - t0)
    if mutation:
        only = None
        if args.mutate_only:
            only = np.array([ipspace.to_int(line.strip()) for line in Path(args.mutate_only).read_text().split()
                             if line.strip()], dtype=np.uint32)
        changes = mutate(universe, *mutation, only=only)
        log.info("mutated %d networks (%s)", len(changes), args.mutate)
        if args.mutations_out:
            Path(args.mutations_out).write_text(json.dumps(changes, indent=1))
    if args.export_truth:
        count = universe.export_truth(args.export_truth)
        log.info("truth: %d networks written to %s", count, args.export_truth)
    simulator = Simulator(universe, host=args.host, base_port=args.base_port, profile=args.profile,
                          faults=faults, seed=args.seed, bootstrap_out=args.bootstrap_out,
                          url_host=args.url_host)
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve(simulator))
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    finally:
        loop.close()
    log.info("stopped")
    return 0
