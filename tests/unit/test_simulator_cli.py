"""``python -m whoiscrawl.simulator``: one ``ready`` line, serves, exits 0 on SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading

import pytest

from simulator_helpers import TEST_SCALE, dotted, get, small_universe
from whoiscrawl.crawl.registries import REGISTRIES
from whoiscrawl.simulator.cli import build_parser, faults_from_args, main
from whoiscrawl.simulator.server import SimulatorThread
from whoiscrawl.simulator.universe import read_truth

READY_TIMEOUT_S = 120


def _first_line(proc: subprocess.Popen, timeout_s: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        return ""


def test_command_line_start_query_and_clean_exit(tmp_path):
    bootstrap = tmp_path / "out" / "ipv4.json"
    truth = tmp_path / "truth.tsv"
    cmd = [sys.executable, "-m", "whoiscrawl.simulator", "--host", "127.0.0.1", "--base-port", "0",
           "--scale", str(TEST_SCALE), "--seed", "1", "--cache-dir", str(tmp_path / "cache"),
           "--bootstrap-out", str(bootstrap), "--export-truth", str(truth), "--down", "afrinic:refuse",
           "--latency-ms", "0", "--jitter-ms", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _first_line(proc, READY_TIMEOUT_S)
        assert line.startswith("ready http://127.0.0.1:") and line.rstrip().endswith("/bootstrap/ipv4.json"), line
        bootstrap_url = line.split()[1]
        served = get(bootstrap_url).json()
        assert served["services"] == json.loads(bootstrap.read_text())["services"]
        urls = {u[0].rstrip("/").rsplit("/", 1)[1]: u[0] for _, u in served["services"]}
        rows = read_truth(truth)
        universe = small_universe()
        assert len(rows) == len(universe)
        addr = int(universe.random_allocated_addresses(1, seed=41)[0])
        net = universe.network(universe.lookup(addr))
        if net.registry != "afrinic":
            assert get(f"{urls[net.registry]}ip/{dotted(addr)}").json()["handle"] == net.handle
        with pytest.raises(ConnectionRefusedError):
            get(f"{urls['afrinic']}ip/41.0.0.1")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""  # nothing after the ready line
    assert (tmp_path / "cache").is_dir() and list((tmp_path / "cache").glob("*.npz"))


def test_options_map_to_faults():
    args = build_parser().parse_args(["--profile", "realistic", "--down", "arin", "--down", "lacnic:timeout",
                                      "--error-rate", "0.1", "--truncate-rate", "0.2", "--html-rate", "0.05",
                                      "--jitter-ms", "7"])
    faults = faults_from_args(args)
    assert faults.down == {"arin": "refuse", "lacnic": "timeout"}
    assert (faults.error_rate, faults.truncate_rate, faults.html_rate) == (0.1, 0.2, 0.05)
    assert faults.latency_ms > 0 and faults.jitter_ms == 7  # realistic latency unless overridden


def test_bad_options_exit_with_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["--profile", "turbo"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        main(["--down", "nowhere"])


def _free_consecutive_ports(count: int, attempts: int = 50) -> int:
    for _ in range(attempts):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
        probe.close()
        if base + count > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no run of free consecutive ports")


def test_fixed_base_port_puts_registry_i_on_base_plus_1_plus_i():
    base = _free_consecutive_ports(6)
    with SimulatorThread(small_universe(), base_port=base) as sim:
        assert sim.bootstrap_url == f"http://127.0.0.1:{base}/bootstrap/ipv4.json"
        for i, name in enumerate(REGISTRIES):
            assert sim.base_urls[name] == f"http://127.0.0.1:{base + 1 + i}/{name}/"
            assert get(sim.base_urls[name] + "help").status == 200


def test_url_host_names_the_advertised_host_not_the_listening_one():
    from simulator_helpers import small_universe

    from whoiscrawl.simulator.server import Simulator

    sim = Simulator(small_universe(), host="0.0.0.0", base_port=0, url_host="simulator")
    assert sim.url_host == "simulator"
    assert Simulator(small_universe(), host="0.0.0.0", base_port=0).url_host == "127.0.0.1"
