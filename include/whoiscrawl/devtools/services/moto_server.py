"""moto in server mode: a real AWS HTTP endpoint on loopback for the EC2 fleet's tests and tooling.

The code under test reaches it only through the ``aws_default`` connection's
``endpoint_url`` extra, exactly as it reaches real AWS: nothing is patched.
moto keeps every resource in memory: one server is one account for as long as
it runs (tests keep apart by tagging each run's resources with its own key).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from whoiscrawl.devtools.services import MissingDependency, free_port
from whoiscrawl.devtools.services.procs import log_tail
from whoiscrawl.errors import WhoiscrawlError

__all__ = ["MotoServer", "MotoServerError", "aws_connection_uri"]

#: moto accepts any credentials; these name what they are.
TEST_ACCESS_KEY = "moto-access-key"
TEST_SECRET_KEY = "moto-secret-key"


class MotoServerError(WhoiscrawlError):
    """The moto server did not start or answer."""


def aws_connection_uri(endpoint_url: str, region: str) -> str:
    """``AIRFLOW_CONN_AWS_DEFAULT`` for an endpoint: the connection every EC2/S3 hook call goes through."""
    return json.dumps({"conn_type": "aws", "login": TEST_ACCESS_KEY, "password": TEST_SECRET_KEY,
                       "extra": {"endpoint_url": endpoint_url, "region_name": region}})


class MotoServer:
    """``moto_server`` as a child process bound to loopback on its own port, log in ``log_dir``."""

    def __init__(self, log_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port or free_port(host)
        self.log_path = Path(log_dir) / "moto_server.log"
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _binary(self) -> list[str]:
        try:
            import moto.server  # noqa: F401  (the server extra: flask, werkzeug)
        except ImportError as exc:
            raise MissingDependency(f"moto's server is not installed ({exc}): pip install 'moto[server]'") from None
        return [sys.executable, "-m", "moto.server"]

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/data.json", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout_s: float = 30) -> "MotoServer":
        argv = [*self._binary(), "-H", self.host, "-p", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self._proc.poll() is not None or time.monotonic() >= deadline:
                code = self._proc.poll()
                self.stop()
                raise MotoServerError(f"moto server on {self.endpoint_url} "
                                      f"{'exited (' + str(code) + ')' if code is not None else 'did not answer'} "
                                      f"within {timeout_s:g} s; {self.log_path}:\n{log_tail(self.log_path)}")
            time.sleep(0.2)
        return self

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the child we started (and only it)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
