"""The planned crawl: a plan from what registries publish, walked with the fewest queries.

``sources`` reads the RIRs' delegated-extended files; ``tree`` holds the
networks found, nested, to answer an address with its most specific one;
``walk`` discovers an allocation's networks (relation searches where offered,
gap probes elsewhere) through a query interface; ``plan`` builds and splits
the plan; ``executor`` runs plan items and seed chunks over RDAP with the
crawl's own components (client, rate limits, policy, breaker, stats, Kafka).
"""
