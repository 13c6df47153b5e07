"""The "WHOIS crawl" page of the Airflow UI: its JSON API (``app``), figures (``figures``) and page."""
