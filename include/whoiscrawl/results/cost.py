"""What a cloud fleet cost: instance-hours times the price per hour, and addresses per dollar.

Spot prices move; the max price is what a worker can have cost at most, so
the figure is an upper bound unless the price actually paid is given.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def fleet_cost(instances: Iterable[dict[str, Any]], price_per_hour: float, addresses_covered: int,
               until: datetime | None = None, price_is_bound: bool = True) -> dict[str, Any]:
    """``instances``: ``launch_time`` and, once gone, ``termination_time`` (ISO 8601); running ones count until ``until``."""
    until = until or datetime.now(timezone.utc)
    hours = 0.0
    count = 0
    for instance in instances:
        start = _time(instance["launch_time"])
        end = _time(instance["termination_time"]) if instance.get("termination_time") else until
        hours += max(0.0, (end - start).total_seconds()) / 3600
        count += 1
    cost = hours * float(price_per_hour)
    return {"instances": count, "instance_hours": round(hours, 4), "price_per_hour": float(price_per_hour),
            "price_is_max_price": price_is_bound, "cost_usd": round(cost, 4),
            "addresses_per_usd": round(addresses_covered / cost) if cost > 0 else None,
            "counted_until": until.isoformat()}
