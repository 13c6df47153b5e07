"""The hosts that run crawl chunks, one provider per kind of fleet.

The DAG's setup task brings the chosen kind up (:func:`bring_up`) and its
teardown task releases it, so the DAG never changes when the fleet does: a new
kind is a :class:`FleetProvider` added to :data:`PROVIDERS`.
"""

from __future__ import annotations

from typing import Any, Callable

from whoiscrawl.orchestration.fleet.base import FleetError, FleetProvider
from whoiscrawl.orchestration.fleet.celery import CeleryProvider
from whoiscrawl.orchestration.fleet.ec2 import Ec2Provider
from whoiscrawl.orchestration.fleet.local import LocalProvider

__all__ = ["FLEET_KINDS", "FleetError", "FleetProvider", "PROVIDERS", "bring_up", "provider_for"]

PROVIDERS: dict[str, type[FleetProvider]] = {p.kind: p for p in (LocalProvider, CeleryProvider, Ec2Provider)}
#: What the DAG's ``fleet`` param offers.
FLEET_KINDS = tuple(PROVIDERS)


def provider_for(kind: str) -> FleetProvider:
    try:
        return PROVIDERS[kind]()
    except KeyError:
        raise FleetError(f"unknown fleet kind {kind!r}; choose one of {', '.join(FLEET_KINDS)}") from None


def bring_up(provider: FleetProvider, params: dict[str, Any],
             record: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Provision, ``record`` the state, then wait for the workers; the state with the hosts that answer.

    The state is recorded before the wait, so what was launched is on file even
    if the task dies waiting. If the workers never answer, it is released here:
    Airflow skips the teardown task of a setup task that failed.
    """
    state = provider.provision(params)
    record(state)
    try:
        ready = provider.workers_ready(state)
    except Exception:
        provider.teardown(state)
        raise
    return {**state, **ready}
