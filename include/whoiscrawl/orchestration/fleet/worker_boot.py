"""A worker host's boot: a Redis replica of the coordinator, then an ``airflow celery worker``.

This is what an EC2 worker's user-data runs (``python -m
whoiscrawl.orchestration.fleet.worker_boot``). The host needs no settings of
its own: it knows the coordinator's address and ports and one login, the
Celery broker's (every worker needs it anyway; the user-data writes it to a
0600 file, never to a command line), finds its own address as the source of
its route to the coordinator, and waits, retrying, until the coordinator has
published the fleet's configuration in Redis (:data:`WORKER_CONFIG_KEY`,
written by the EC2 provider's ``provision``). That key lies outside the crawl
user's ``whoiscrawl:*`` keys: a crawl task cannot read the fleet's secrets.

The configuration names the Redis logins of the host's replica: it logs in to
the master as ``replica``, and knows the master's ``crawl`` user (the host's
crawl tasks use the same login for both) and a local ``admin`` whose password
is made at boot and kept only in the replica's 0600 config. The boot then
stays in the foreground as the supervisor of both processes: either one that
exits is started again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import redis

from whoiscrawl.devtools.credentials import REDIS_RULES
from whoiscrawl.devtools.services.redis_server import RedisServer, find_redis_server
from whoiscrawl.settings import PREFIX, PROJECT_ROOT

log = logging.getLogger("whoiscrawl.worker_boot")

#: Where the coordinator publishes ``{"env", "queue", "concurrency", "redis"}`` for worker hosts: outside
#: the crawl user's ``whoiscrawl:*`` keys, written and read with the Celery broker's login.
WORKER_CONFIG_KEY = "whoiscrawl-fleet:worker_config"
#: The coordinator's settings a worker takes over (the same confinement on every host).
WORKER_SETTINGS = ("BOOTSTRAP_URL_ALLOWLIST", "SEED_BASE_DIR", "OUTPUT_BASE_DIR")
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


def read_join_file(path: Path | None) -> tuple[str, str] | None:
    """The broker login the user-data left (``{"user", "password"}``, mode 0600), or None without one."""
    if path is None:
        return None
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return (data["user"], data["password"]) if data.get("password") else None


def wait_config(master: tuple[str, int], login: tuple[str, str] | None) -> dict:
    """The published worker config, from the coordinator's Redis, retried until it is there."""
    auth = {"username": login[0], "password": login[1]} if login else {}
    client = redis.Redis(host=master[0], port=master[1], socket_timeout=5, socket_connect_timeout=5, **auth)
    while True:
        try:
            raw = client.get(WORKER_CONFIG_KEY)
        except (redis.RedisError, OSError) as exc:
            log.info("coordinator %s:%d not answering yet (%s)", *master, type(exc).__name__)
            raw = None
        if raw:
            return json.loads(raw)
        log.info("no %s in Redis yet (coordinator %s:%d); retrying in %g s", WORKER_CONFIG_KEY, *master, RETRY_S)
        time.sleep(RETRY_S)


def replica_server(config: dict, coordinator: str, redis_port: int, replica_port: int, data_dir: Path) -> RedisServer:
    """The host's replica: the master's ``crawl`` user and a local ``admin``; ``replica`` towards the master."""
    logins = config.get("redis") or {}
    users, auth, masterauth = [], None, None
    if logins.get("crawl"):
        local_admin = secrets.token_urlsafe(24)
        users = [f"crawl on >{logins['crawl']} {REDIS_RULES['crawl']}", f"admin on >{local_admin} {REDIS_RULES['admin']}"]
        auth = ("admin", local_admin)
    if logins.get("replica"):
        masterauth = ("replica", logins["replica"])
    return RedisServer(data_dir, replica_port, bind="127.0.0.1", replicaof=(coordinator, redis_port),
                       replica_read_only=False, users=users, auth=auth, masterauth=masterauth)


def worker_env(config: dict, address: str, replica_port: int, work_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(config["env"])
    env.update({PREFIX + name: str(value) for name, value in (config.get("settings") or {}).items()
                if name in WORKER_SETTINGS})
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
    parser.add_argument("--join-file", type=Path, help="0600 JSON with the Celery broker's Redis login")
    parser.add_argument("--redis-server", default=None, help="redis-server binary (default: found on PATH)")
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
    config = wait_config((args.coordinator, args.redis_port), read_join_file(args.join_file))
    server = replica_server(config, args.coordinator, args.redis_port, args.replica_port, work / "redis")
    replica_cmd = [args.redis_server or find_redis_server(), str(server.write_config())]
    replica = subprocess.Popen(replica_cmd, stdin=subprocess.DEVNULL)
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
