"""What moto cannot prove: the user-data the EC2 provider sends makes a machine join the fleet and crawl.

The provider runs as the coordinator runs it (a child process with the local
fleet's Airflow configuration and ``aws_default`` pointing at a moto server):
it publishes the workers' configuration in the coordinator's Redis and
requests one spot worker. The user-data moto then holds for that instance is
executed as root in a fresh network-namespace host that the fleet gave nothing
but a network. That host must start its Redis replica, read the configuration,
answer Celery, and crawl the one chunk of a run no other host can take (the
fleet's own host has its worker stopped).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from test_fleet import DAG_ID, RATE_LIMITS, Api, _free_ports, _run_cli, _skip_reason, _tail, fleet_network

from whoiscrawl.devtools.services.moto_server import MotoServer, aws_connection_uri
from whoiscrawl.orchestration.fleet.worker_boot import WORKER_CONFIG_KEY, celery_hostname
from whoiscrawl.settings import PREFIX, PROJECT_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.fleet, pytest.mark.timeout(1800)]

REGION = "us-east-1"
BOOT_INDEX = 2
JOIN_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def one_host_fleet(tmp_path_factory) -> Iterator[tuple]:
    """The local fleet with one host whose worker is stopped: only a booted host can crawl."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from whoiscrawl.devtools.namespace_fleet import LocalFleet

    home = Path(tempfile.mkdtemp(prefix="whoiscrawl-ec2-"))
    os.chmod(home, 0o755)  # PostgreSQL runs as the postgres user
    fleet_id, subnet = fleet_network()
    names = ("REDIS_PORT", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "POSTGRES_PORT", "AIRFLOW_API_PORT",
             "REPLICA_PORT", "WORKER_LOG_PORT")
    ports = {n: os.environ.get(PREFIX + n) for n in names}
    free = iter(_free_ports(len(names)))
    overrides = {n: ports[n] or next(free) for n in names}
    overrides.update({"HOME": str(home), "FLEET_ID": fleet_id, "FLEET_SUBNET": subnet, "OUTPUT_BASE_DIR": str(home),
                      "SIM_BASE_PORT": os.environ.get(PREFIX + "SIM_BASE_PORT") or _free_ports(6, consecutive=True)[0]})
    env = {k: v for k, v in os.environ.items() if not k.startswith((PREFIX, "AIRFLOW"))}
    env.update({PREFIX + k: str(v) for k, v in overrides.items()})
    local = LocalFleet(Settings(environ=env), out=lambda _text: None)
    log = home / "fleet-cli.log"
    moto = MotoServer(home / "moto")
    try:
        up = _run_cli(["up", "--hosts", "1", "--timeout", "600"], env, log, timeout_s=1800)
        assert up.returncode == 0, f"fleet up failed:\n{_tail(log)}"
        local.worker(1).stop()
        moto.start()
        yield local, env, home, log, moto
    finally:
        moto.stop()
        down = _run_cli(["down"], env, log, timeout_s=600)
        if down.returncode != 0:  # down is safe to run again; a second failure is reported with both logs
            down = _run_cli(["down"], env, log, timeout_s=600)
        left = [n for n in (local.network.bridge, local.network.host(1).netns, local.network.host(BOOT_INDEX).netns)
                if local.network.link_exists(n) or local.network.netns_exists(n)]
        tail = _tail(log)  # before the home (and the log) is removed
        shutil.rmtree(home, ignore_errors=True)
        assert down.returncode == 0 and not left, f"fleet down exited {down.returncode}, left {left}:\n{tail}"


PROVISION = """
import json, sys
from whoiscrawl.orchestration.fleet.ec2 import Ec2Provider
provider = Ec2Provider()
params = json.loads(sys.argv[1])
state = provider.provision(params)
print("STATE=" + json.dumps(state))
"""


def test_the_user_data_the_provider_sends_joins_the_fleet_and_crawls_a_chunk(one_host_fleet):
    local, env, home, log, moto = one_host_fleet
    coordinator = local.coordinator
    # the fleet's own settings (ports, home), as the processes `fleet up` started have them
    aws_env = {**local.coordinator_env(), **{k: v for k, v in env.items() if k.startswith(PREFIX)},
               "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_uri(moto.endpoint_url, REGION)}

    # 1. the coordinator's provision: the workers' config to Redis, one spot worker from an existing image
    from whoiscrawl.orchestration.aws import ec2_client

    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = aws_env["AIRFLOW_CONN_AWS_DEFAULT"]
    try:
        ec2 = ec2_client(REGION)
        image = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
        run = f"ec2proof_{uuid.uuid4().hex[:8]}"
        params = {"run": run, "ec2_region": REGION, "ec2_workers": 1, "ec2_ami_id": image,
                  "ec2_coordinator": coordinator, "ec2_max_price": 0.04, "ec2_poll_s": 0.5,
                  # where the image has the project: this checkout is what the AMI would hold
                  "ec2_install_dir": str(PROJECT_ROOT), "ec2_work_dir": str(home / "booted")}
        done = subprocess.run([sys.executable, "-c", PROVISION, json.dumps(params)], env=aws_env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr[-3000:]
        state = json.loads(next(l for l in done.stdout.splitlines() if l.startswith("STATE="))[len("STATE="):])
        worker_id = state["workers"][0]["id"]
        attr = ec2.describe_instance_attribute(InstanceId=worker_id, Attribute="userData")
        user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
    finally:
        del os.environ["AIRFLOW_CONN_AWS_DEFAULT"]
    assert user_data.startswith("#!/bin/bash") and coordinator in user_data
    # the one secret it carries is the Celery broker's login; the crawl, replica and admin ones come from Redis
    creds = local.credentials()
    assert creds.redis_celery in user_data
    assert not any(secret in user_data for secret in (creds.redis_admin, creds.redis_crawl, creds.redis_replica,
                                                      creds.kafka_admin, creds.kafka_crawl))

    # 2. that exact script, as root, on a fresh host that knows nothing else
    script = home / "user-data.sh"
    script.write_text(user_data)
    host = local.boot_host(BOOT_INDEX, script)
    name = celery_hostname(host.address)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    seen: dict = {}
    while True:
        link = local.replica_links().get(host.address, {})
        seen = local.celery_workers()
        if link.get("state") == "online" and "whoiscrawl" in seen.get(name, []):
            break
        assert time.monotonic() < deadline, (f"booted host did not join within {JOIN_TIMEOUT_S} s: replica {link}, "
                                             f"workers {seen}\n{_tail(home / 'booted' / 'boot.log')}")
        time.sleep(3)

    assert (home / "booted" / "join.json").stat().st_mode & 0o777 == 0o600
    import redis

    crawl_user = redis.Redis(host=coordinator, port=int(local.settings.REDIS_PORT), username="crawl",
                             password=creds.redis_crawl)
    with pytest.raises(redis.exceptions.NoPermissionError):  # the fleet's secrets are not the crawl's to read
        crawl_user.get(WORKER_CONFIG_KEY)

    # 3. it crawls: the only worker on the queue takes the run's one chunk
    from whoiscrawl.devtools.stack import connection_env

    api = Api(f"http://{coordinator}:{local.settings.AIRFLOW_API_PORT}", home / "fleet" / "airflow" / "passwords.json")
    deadline = time.monotonic() + 300
    while True:
        try:
            api.get("details")
            break
        except Exception:  # noqa: BLE001 - 404 until the dag-processor has parsed it
            assert time.monotonic() < deadline, "DAG not parsed"
            time.sleep(5)
    assert _run_cli(["airflow", "dags", "unpause", DAG_ID], env, log, 300).returncode == 0
    run_id = f"ec2_boot_{uuid.uuid4().hex[:8]}"
    conf = {"limit": 300, "chunks": 1, "random_seed": 2018, "rate_limits": RATE_LIMITS, "fleet": "celery",
            "bootstrap": connection_env(local.settings)[PREFIX + "SIM_BOOTSTRAP_URL"],
            "output_dir": str(home / "out"), "strategy": "classic"}
    trigger = _run_cli(["airflow", "dags", "trigger", DAG_ID, "--run-id", run_id, "-c", json.dumps(conf)], env, log, 300)
    assert trigger.returncode == 0, _tail(log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (run_state := api.get(f"dagRuns/{run_id}")["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run not finished in {RUN_TIMEOUT_S} s"
        time.sleep(5)
    tis = api.task_instances(run_id)
    assert run_state == "success", {t["task_id"]: t["state"] for t in tis}
    chunk = next(t for t in tis if t["task_id"] == "crawl_chunk")
    assert chunk["hostname"] == host.address
    outcome = api.xcom(run_id, "crawl_chunk", 0)
    assert outcome["addresses"] == 300 and outcome["looked_up"] > 0
    report = api.xcom(run_id, "coverage_report")
    assert report["distinct_networks"] > 0
