"""A cloud fleet's cost: instance-hours from launch and termination times, bounded by the max price."""

from datetime import datetime, timezone

from whoiscrawl.results.cost import fleet_cost


def test_hours_times_the_price_and_addresses_per_dollar():
    until = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    instances = [{"launch_time": "2026-01-01T10:30:00+00:00"},  # still running: counts until the report
                 {"launch_time": "2026-01-01T11:00:00Z", "termination_time": "2026-01-01T11:30:00Z"}]
    cost = fleet_cost(instances, 0.04, 2_000_000, until=until)
    assert cost["instances"] == 2 and cost["instance_hours"] == 2.0
    assert cost["cost_usd"] == 0.08 and cost["addresses_per_usd"] == 25_000_000
    assert cost["price_is_max_price"] is True


def test_no_hours_no_division():
    cost = fleet_cost([], 0.04, 10)
    assert cost["cost_usd"] == 0 and cost["addresses_per_usd"] is None
