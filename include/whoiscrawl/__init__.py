"""whoiscrawl: RDAP WHOIS collection for the whole IPv4 space, orchestrated by Airflow."""

__version__ = "0.1.0"
