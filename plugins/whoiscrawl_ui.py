"""Airflow plugin: the "WHOIS crawl" page (live figures of a crawl) in the Airflow UI.

The logic lives in the package (``whoiscrawl.orchestration.ui``); this file only registers it.
"""

from airflow.plugins_manager import AirflowPlugin

from whoiscrawl.orchestration.ui.app import URL_PREFIX, create_app


class WhoiscrawlUIPlugin(AirflowPlugin):
    name = "whoiscrawl"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "whoiscrawl live figures"}]
    external_views = [{"name": "WHOIS crawl", "href": f"{URL_PREFIX}/", "destination": "nav",
                       "url_route": "whoiscrawl", "category": "browse"}]
