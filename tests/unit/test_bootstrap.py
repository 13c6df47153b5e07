import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from whoiscrawl.crawl import ipspace
from whoiscrawl.crawl.bootstrap import Bootstrap, BootstrapError, default_document, load_document, refresh
from whoiscrawl.settings import Settings


def test_shipped_iana_file_routes_to_the_five_rirs():
    b = Bootstrap(default_document())
    assert b.registries() == ["afrinic", "apnic", "arin", "lacnic", "ripencc"]
    cases = {"1.1.1.1": "apnic", "3.3.3.3": "arin", "193.0.6.139": "ripencc",
             "179.0.0.1": "lacnic", "41.0.0.1": "afrinic",
             # legacy 130/8 is ARIN's in the bootstrap; RIPE holds 130.59/16: a redirect case
             "130.59.31.80": "arin"}
    for addr, reg in cases.items():
        svc = b.route(ipspace.to_int(addr))
        assert svc.registry == reg, addr
        assert svc.base_url.startswith("https://") and svc.base_url.endswith("/")
    assert b.route(ipspace.to_int("10.0.0.1")) is None
    assert b.route(ipspace.to_int("0.1.2.3")) is None


def test_longest_prefix_wins():
    doc = {"services": [
        [["10.0.0.0/8"], ["http://a.example/a/"]],
        [["10.1.0.0/16"], ["http://b.example/b/"]],
        [["10.1.2.0/24"], ["http://c.example/c"]],
    ]}
    b = Bootstrap(doc)
    assert b.route(ipspace.to_int("10.9.9.9")).base_url == "http://a.example/a/"
    assert b.route(ipspace.to_int("10.1.9.9")).base_url == "http://b.example/b/"
    assert b.route(ipspace.to_int("10.1.2.3")).base_url == "http://c.example/c/"
    assert b.hosts() == {"a.example:80", "b.example:80", "c.example:80"}


def test_malformed_document_is_a_clear_error(tmp_path):
    with pytest.raises(BootstrapError):
        Bootstrap({"nope": 1})
    p = tmp_path / "b.json"
    p.write_text("<html>")
    with pytest.raises(BootstrapError, match="cannot read"):
        load_document(str(p))


def serve_json(doc, hits):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_url_source_is_fetched_once_then_cached_and_refreshable(tmp_path):
    hits = []
    doc = {"services": [[["1.0.0.0/8"], ["http://127.0.0.1:1/apnic/"]]]}
    srv = serve_json(doc, hits)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/bootstrap/ipv4.json"
        s = Settings({"HOME": str(tmp_path)})
        d1, _ = load_document(url, s)
        d2, _ = load_document(url, s)
        assert d1 == d2 == doc and len(hits) == 1
        b = refresh(url, s)
        assert len(hits) == 2
        assert b.route(ipspace.to_int("1.2.3.4")).registry == "apnic"
    finally:
        srv.shutdown()


def test_refresh_without_a_source_updates_the_default_from_iana(tmp_path, monkeypatch):
    from whoiscrawl.crawl import bootstrap

    hits = []
    newer = {"publication": "2026-01-01T00:00:00Z",
             "services": [[["1.0.0.0/8"], ["https://rdap.lacnic.net/rdap/"]]]}
    srv = serve_json(newer, hits)
    try:
        monkeypatch.setattr(bootstrap, "IANA_URL", f"http://127.0.0.1:{srv.server_address[1]}/rdap/ipv4.json")
        s = Settings({"HOME": str(tmp_path)}, environ={})
        assert load_document(None, s)[1] == "iana (shipped)"
        b = refresh(None, s)
        assert len(hits) == 1 and b.publication == "2026-01-01T00:00:00Z"
        doc, where = load_document(None, s)  # the default now is the refreshed copy
        assert doc == newer and "refreshed" in where
    finally:
        srv.shutdown()


MIRRORS = {"services": [[["1.0.0.0/8"], ["https://rdap-mirror.example:8443/"]],
                        [["200.0.0.0/8"], ["http://10.0.0.9:8080/lacnic-proxy/"]]]}


def test_registries_behind_mirrors_are_named_by_the_naming_setting():
    unnamed = Bootstrap(MIRRORS)
    assert unnamed.registries() == ["10.0.0.9:8080", "rdap-mirror.example:8443"]
    named = Bootstrap(MIRRORS, names="rdap-mirror.example:8443=apnic,10.0.0.9=lacnic")
    assert named.registries() == ["apnic", "lacnic"]
    # a redirect to a bootstrap host takes that service's name, wherever on the host it points
    assert named.registry_for_url("https://rdap-mirror.example:8443/other/ip/1.1.1.1") == "apnic"
    assert named.registry_for_url("https://rdap.arin.net/registry/ip/3.3.3.3") == "arin"


def test_a_rate_limit_for_a_registry_the_bootstrap_lacks_is_an_error():
    named = Bootstrap(MIRRORS, names="rdap-mirror.example:8443=apnic,10.0.0.9=lacnic")
    named.check_rate_limits("apnic=5/1,default=2/1")
    with pytest.raises(BootstrapError, match="ripe"):
        named.check_rate_limits("apnic=5/1,ripe=3/1")  # a typo of ripencc, silently ignored before
    Bootstrap(default_document()).check_rate_limits("lacnic=10/60,arin=10/1")
    with pytest.raises(BootstrapError, match="registry_names"):
        Bootstrap(MIRRORS).check_rate_limits("apnic=5/1")
