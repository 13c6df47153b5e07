"""Throughput of the registry simulator (fast profile) under concurrent keep-alive clients.

Starts ``python -m whoiscrawl.simulator`` in a subprocess on free ports, drives
it from this process for a bounded time with lean HTTP/1.1 clients asking for
random allocated addresses at the registry that holds them, prints figures and,
last, exactly one line ``responses_per_s=<n>``.  Stops by itself.

    python bench/simulator_bench.py [--seconds 10] [--clients 64] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.settings import Settings
from whoiscrawl.simulator.server import new_event_loop
from whoiscrawl.simulator.universe import build_universe

READY_TIMEOUT_S = 300.0


def stop_cleanly_on_sigterm() -> None:
    """A SIGTERM (``timeout``, a CI cancel) runs the benchmark's ``finally`` blocks: its services stop too."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def start_simulator(scale: float, seed: int, cache_dir: Path) -> tuple[subprocess.Popen, str]:
    """Start the simulator on free ports and wait for its ``ready`` line."""
    cmd = [sys.executable, "-m", "whoiscrawl.simulator", "--host", "127.0.0.1", "--base-port", "0",
           "--profile", "fast", "--seed", str(seed), "--scale", str(scale), "--cache-dir", str(cache_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=READY_TIMEOUT_S)
    except queue.Empty:
        stop_simulator(proc)
        raise TimeoutError("simulator not ready in time") from None
    if not line.startswith("ready "):
        stop_simulator(proc)
        raise RuntimeError(f"simulator did not get ready (exit {proc.poll()}): {line!r}")
    return proc, line.split(" ", 1)[1].strip()


def stop_simulator(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def base_urls_from_bootstrap(bootstrap_url: str) -> dict[str, str]:
    with urllib.request.urlopen(bootstrap_url, timeout=10) as answer:
        document = json.load(answer)
    urls = {}
    for _prefixes, service_urls in document["services"]:
        url = service_urls[0]
        urls[urlsplit(url).path.strip("/").split("/")[0]] = url
    return urls


async def client(host: str, port_of: dict[str, int], paths: list[tuple[str, bytes]], start: int, step: int,
                 deadline: float, statuses: Counter, latencies: list[float]) -> None:
    """One keep-alive connection per registry; requests in sequence until the deadline."""
    conns: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    i = start
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < deadline:
            registry, request = paths[i % len(paths)]
            i += step
            if registry not in conns:
                conns[registry] = await asyncio.open_connection(host, port_of[registry])
            reader, writer = conns[registry]
            t0 = loop.time()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            marker = head.find(b"Content-Length: ")
            length = int(head[marker + 16: head.find(b"\r\n", marker)])
            await reader.readexactly(length)
            latencies.append(loop.time() - t0)
            statuses[status] += 1
    finally:
        for _reader, writer in conns.values():
            writer.close()


async def drive(base_urls: dict[str, str], requests: list[tuple[str, bytes]], clients: int,
                seconds: float) -> tuple[Counter, list[float], float]:
    host = urlsplit(next(iter(base_urls.values()))).hostname or "127.0.0.1"
    port_of = {name: urlsplit(url).port or 80 for name, url in base_urls.items()}
    statuses: Counter = Counter()
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    deadline = t0 + seconds
    tasks = [client(host, port_of, requests, k, clients, deadline, statuses, latencies) for k in range(clients)]
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=seconds + 30)
    return statuses, latencies, loop.time() - t0


def main(argv: list[str] | None = None) -> int:
    stop_cleanly_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--addresses", type=int, default=200_000)
    args = parser.parse_args(argv)

    cache_dir = Settings().home / "sim" / "cache"  # where the local stack keeps it too
    t0 = time.perf_counter()
    universe = build_universe(args.seed, args.scale, cache_dir=cache_dir)
    addrs = universe.random_allocated_addresses(args.addresses, seed=7)
    owners = universe.registry_codes[universe.lookup_many(addrs)]
    print(f"universe: {len(universe)} networks (scale {args.scale}), {time.perf_counter() - t0:.1f} s")

    proc, bootstrap_url = start_simulator(args.scale, args.seed, cache_dir)
    try:
        base_urls = base_urls_from_bootstrap(bootstrap_url)
        requests = []
        for addr, code in zip(addrs.tolist(), owners.tolist()):
            registry = REGISTRIES[code]
            path = urlsplit(base_urls[registry]).path
            dotted = f"{addr >> 24}.{(addr >> 16) & 255}.{(addr >> 8) & 255}.{addr & 255}"
            requests.append((registry, f"GET {path}ip/{dotted} HTTP/1.1\r\nHost: sim\r\n\r\n".encode()))
        loop = new_event_loop()
        server_cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
        try:
            statuses, latencies, elapsed = loop.run_until_complete(
                drive(base_urls, requests, args.clients, args.seconds))
        finally:
            loop.close()
        server_cpu = cpu_seconds(proc.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        stats_url = bootstrap_url.replace("/bootstrap/ipv4.json", "/_stats")
        with urllib.request.urlopen(stats_url, timeout=10) as answer:
            server_stats = json.load(answer)
    finally:
        code = stop_simulator(proc)

    total = sum(statuses.values())
    lat = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    print(f"cpu cores: {os.cpu_count()} (shared; client and server run on the same machine)")
    print(f"clients: {args.clients} keep-alive, duration: {elapsed:.2f} s")
    print(f"responses: {total}  statuses: {dict(sorted(statuses.items()))}")
    print(f"server counted: {server_stats['requests']} requests, {server_stats['responses']}")
    print(f"latency ms: p50 {np.percentile(lat, 50):.2f}  p90 {np.percentile(lat, 90):.2f}  "
          f"p99 {np.percentile(lat, 99):.2f}")
    print(f"cpu seconds: server {server_cpu:.2f}, bench client {client_cpu:.2f}; "
          f"responses per server cpu second: {total / server_cpu if server_cpu else 0:.0f}")
    print(f"simulator exit code: {code}")
    print(f"responses_per_s={total / elapsed:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
