"""Airflow's ``hostname_callable`` on fleet hosts (``AIRFLOW__CORE__HOSTNAME_CALLABLE``)."""

from __future__ import annotations

import socket

from whoiscrawl.settings import Settings


def host_address() -> str:
    """The address other machines reach this host at.

    Airflow records it as the task's hostname and fetches the task's log from
    it; an address needs no DNS (``WHOISCRAWL_HOST_ADDRESS``), else the hostname.
    """
    return Settings().HOST_ADDRESS or socket.gethostname()
