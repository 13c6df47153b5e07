"""A worker host's boot: a Redis replica of the coordinator, then an ``airflow celery worker``.

This is what an EC2 worker's user-data runs (``python -m
whoiscrawl.orchestration.fleet.worker_boot``). The host needs no settings of
its own: it knows the coordinator's address and ports, finds its own address
as the source of its route to the coordinator, and waits, retrying, until the
coordinator has published the fleet's Airflow configuration in Redis
(:data:`WORKER_CONFIG_KEY`, written by the EC2 provider's ``provision``).
It then stays in the foreground as the supervisor of both processes: either
one that exits is started again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import redis

from whoiscrawl.settings import PREFIX, PROJECT_ROOT

log = logging.getLogger("whoiscrawl.worker_boot")

#: Where the coordinator publishes ``{"env": {...}, "queue": ..., "concurrency": ...}`` for worker hosts.
WORKER_CONFIG_KEY = "whoiscrawl:fleet:worker_config"
RETRY_S = 5.0


def own_address(coordinator: str, port: int) -> str:
    """This host's source address towards the coordinator (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((coordinator, port))
        return str(sock.getsockname()[0])


def host_name(address: str) -> str:
    return "whoiscrawl-" + address.replace(".", "-")


def celery_hostname(address: str) -> str:
    """The name a worker answers Celery pings with: what the provider waits for."""
    return f"{host_name(address)}@{address}"


def replica_argv(redis_server: str, coordinator: str, redis_port: int, replica_port: int, data_dir: Path) -> list[str]:
    return [redis_server, "--port", str(replica_port), "--bind", "127.0.0.1", "--replicaof", coordinator,
            str(redis_port), "--replica-read-only", "no", "--save", "", "--appendonly", "no",
            "--dir", str(data_dir), "--protected-mode", "no"]


def wait_config(replica_port: int, master: tuple[str, int]) -> dict:
    """The published worker config: from the local replica once synced (else the master), retried forever."""
    clients = [redis.Redis(port=replica_port, socket_timeout=5, socket_connect_timeout=2),
               redis.Redis(host=master[0], port=master[1], socket_timeout=5, socket_connect_timeout=5)]
    while True:
        for client in clients:
            try:
                raw = client.get(WORKER_CONFIG_KEY)
            except (redis.RedisError, OSError):
                continue
            if raw:
                return json.loads(raw)
        log.info("no %s in Redis yet (coordinator %s:%d); retrying in %g s", WORKER_CONFIG_KEY, *master, RETRY_S)
        time.sleep(RETRY_S)


def worker_env(config: dict, address: str, replica_port: int, work_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(config["env"])
    env.update({
        "AIRFLOW_HOME": str(work_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(work_dir / "airflow" / "logs"),
        PREFIX + "REDIS_REPLICA_URL": f"redis://127.0.0.1:{replica_port}/0",
        PREFIX + "HOST_ID": host_name(address),
        PREFIX + "HOST_ADDRESS": address,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m whoiscrawl.orchestration.fleet.worker_boot",
                                     description="Join the fleet of a coordinator: Redis replica + Celery worker.")
    parser.add_argument("--coordinator", required=True, help="address of the coordinator (Redis master)")
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--replica-port", type=int, required=True)
    parser.add_argument("--work-dir", type=Path, required=True, help="logs, replica data, AIRFLOW_HOME")
    parser.add_argument("--redis-server", default="redis-server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work: Path = args.work_dir
    (work / "redis").mkdir(parents=True, exist_ok=True)
    while True:
        try:
            address = own_address(args.coordinator, args.redis_port)
            break
        except OSError as exc:  # no route yet: the network is still coming up
            log.info("no route to %s yet (%s); retrying", args.coordinator, exc)
            time.sleep(RETRY_S)
    log.info("host %s joins the fleet of %s", address, args.coordinator)
    replica_cmd = replica_argv(args.redis_server, args.coordinator, args.redis_port, args.replica_port, work / "redis")
    replica = subprocess.Popen(replica_cmd, stdin=subprocess.DEVNULL)
    config = wait_config(args.replica_port, (args.coordinator, args.redis_port))
    env = worker_env(config, address, args.replica_port, work)
    worker_cmd = [str(Path(sys.executable).with_name("airflow")), "celery", "worker",
                  "--celery-hostname", celery_hostname(address), "--queues", str(config["queue"]),
                  "--concurrency", str(config["concurrency"])]
    log.info("starting: %s", " ".join(worker_cmd))
    worker = subprocess.Popen(worker_cmd, env=env, cwd=work, stdin=subprocess.DEVNULL)
    while True:  # the supervisor: what exits is started again
        time.sleep(RETRY_S)
        if replica.poll() is not None:
            log.warning("replica exited (%s); starting it again", replica.returncode)
            replica = subprocess.Popen(replica_cmd, stdin=subprocess.DEVNULL)
        if worker.poll() is not None:
            log.warning("celery worker exited (%s); starting it again", worker.returncode)
            worker = subprocess.Popen(worker_cmd, env=env, cwd=work, stdin=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
