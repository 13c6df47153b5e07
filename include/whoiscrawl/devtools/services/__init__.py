"""Local services the project starts itself (Redis today), and their shared helpers.

The crawl does not depend on anything installed system-wide beyond the service
binaries; when one is missing we say which Debian package provides it instead of
failing later with a confusing connection error.
"""

from __future__ import annotations

import os
import socket

from whoiscrawl.errors import WhoiscrawlError

__all__ = ["MissingDependency", "free_port", "service_env"]


class MissingDependency(WhoiscrawlError):
    """A binary the project needs is not installed; the message names the package to install."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago on ``host`` (the OS picks it).

    Tests and benches use it instead of fixed ports so they can run side by side.
    There is a small race between closing the probe and the service binding it;
    callers that start a service should retry on a bind failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int, host: str = "127.0.0.1", low: int = 20000, high: int = 32000) -> int:
    """The first of ``count`` consecutive ports free a moment ago on ``host`` (the simulator needs six).

    Below Linux's ephemeral range (32768 and up), so no client connection of another process takes one
    of them between this probe and the bind, as can happen after :func:`free_port`.
    """
    import random

    from whoiscrawl.devtools.services.procs import port_in_use

    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high - count)
        if not any(port_in_use(host, port) for port in range(base, base + count)):
            return base
    raise MissingDependency(f"no {count} consecutive free ports between {low} and {high} on {host}")


#: Environment variables a service process never needs: Airflow's configuration and connections
#: (which hold the cluster's credentials) and the crawl's endpoints.
_NOT_FOR_SERVICES = ("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_VAR_", "WHOISCRAWL_REDIS_URL",
                     "WHOISCRAWL_REDIS_REPLICA_URL")


def service_env(**extra: str) -> dict[str, str]:
    """This process's environment without what holds credentials: for Redis, Kafka, the simulator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_FOR_SERVICES)}
    env.update(extra)
    return env
