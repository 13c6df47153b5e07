"""The crawl core: IPv4 space, routing, RDAP lookups, politeness, the known-network index, the engine.

It imports neither Airflow nor the local dev tools nor subprocess (tests/unit/test_boundaries.py),
so it runs the same inside an Airflow task, a benchmark or a plain script.
"""
