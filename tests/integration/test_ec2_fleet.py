"""The EC2 fleet's lifecycle against a real moto server, reached only through ``aws_default``'s endpoint_url.

moto answers the EC2 API but boots nothing, so this test plays the one part an
instance plays in the lifecycle: the builder's user-data powers it off when the
install is done (here: ``stop_instances``, what a poweroff looks like through
the API). What a worker does at boot is proven in ``test_ec2_userdata.py``.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from typing import Iterator

import pytest

from whoiscrawl.devtools.services.moto_server import MotoServer, aws_connection_uri
from whoiscrawl.orchestration.aws import ec2_client
from whoiscrawl.orchestration.fleet import FleetError, bring_up
from whoiscrawl.orchestration.fleet.ec2 import (TAG_ROLE, TAG_RUN, Ec2Options, Ec2Provider, Notes,
                                                 fleet_cost_of_run, state_key, worker_user_data)
from whoiscrawl.orchestration.storage import StorageError, copy_to_s3
from whoiscrawl.orchestration.fleet.worker_boot import WORKER_CONFIG_KEY
from whoiscrawl.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REGION = "us-east-1"
COORDINATOR = "10.213.13.1"


@pytest.fixture(scope="module")
def moto(tmp_path_factory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="module")
def base_image(moto: MotoServer) -> str:
    """One of moto's public images, looked up once (listing them all takes seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_uri(moto.endpoint_url, REGION))
        return sorted(i["ImageId"] for i in ec2_client(REGION).describe_images(Owners=["amazon"])["Images"])[0]


@pytest.fixture
def aws(moto: MotoServer, redis_flush, monkeypatch):
    """The connection points at moto; Redis is the run's state; Celery's broker is that Redis (nothing answers).

    Each test's run has a tag of its own, so tests share the server without seeing each other's resources.
    """
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_uri(moto.endpoint_url, REGION))
    url = f"redis://{redis_flush.host}:{redis_flush.port}"
    monkeypatch.setenv("WHOISCRAWL_REDIS_URL", f"{url}/0")
    monkeypatch.setenv("AIRFLOW__CELERY__BROKER_URL", f"{url}/1")
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "whoiscrawl")
    return ec2_client(REGION)




def _params(base_image: str, **extra) -> dict:
    params = {"run": f"ec2test_{uuid.uuid4().hex[:8]}", "ec2_region": REGION, "ec2_workers": 3,
              "ec2_instance_type": "c6i.large", "ec2_max_price": 0.031, "ec2_coordinator": COORDINATOR,
              "ec2_base_ami_id": base_image, "ec2_project_url": "http://127.0.0.1:9/whoiscrawl.tar.gz",
              "ec2_poll_s": 0.2, "ec2_bake_wait_s": 30, "ec2_ready_wait_s": 1}
    params.update(extra)
    return params


class Builder(threading.Thread):
    """Powers the builder off once it runs, as its user-data's last line does on a real instance."""

    def __init__(self, ec2, run: str, power_off: bool = True) -> None:
        super().__init__(daemon=True)
        self.ec2, self.run_tag, self.power_off = ec2, run, power_off
        self.seen: list[str] = []
        self.user_data = ""
        self.done = threading.Event()

    def run(self) -> None:  # noqa: D401 - threading's entry point
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.seen and not self.done.is_set():
            found = [i for r in self.ec2.describe_instances(Filters=[
                {"Name": f"tag:{TAG_RUN}", "Values": [self.run_tag]}, {"Name": f"tag:{TAG_ROLE}", "Values": ["builder"]},
                {"Name": "instance-state-name", "Values": ["running"]}])["Reservations"] for i in r["Instances"]]
            if found:
                self.seen = [i["InstanceId"] for i in found]
                attr = self.ec2.describe_instance_attribute(InstanceId=self.seen[0], Attribute="userData")
                self.user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
                if self.power_off:
                    self.ec2.stop_instances(InstanceIds=self.seen)
            time.sleep(0.1)


def _provision(ec2, params: dict, power_off: bool = True) -> tuple[dict, Builder]:
    builder = Builder(ec2, params["run"], power_off)
    builder.start()
    provider = Ec2Provider()
    try:  # as the DAG's two setup tasks call it
        state = provider.provision({**params, **provider.prepare_image(params)})
    finally:
        builder.done.set()
        builder.join(40)
    return state, builder


def _tagged(ec2, run: str) -> dict[str, list[str]]:
    """Every resource still carrying the run's tag (instances only while not terminated)."""
    run_tag = [{"Name": f"tag:{TAG_RUN}", "Values": [run]}]
    return {
        "instances": [i["InstanceId"] for r in ec2.describe_instances(Filters=[*run_tag, {
            "Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])["Reservations"]
            for i in r["Instances"]],
        "images": [i["ImageId"] for i in ec2.describe_images(Owners=["self"], Filters=run_tag)["Images"]],
        "snapshots": [s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"], Filters=run_tag)["Snapshots"]],
        "requests": [r["SpotInstanceRequestId"] for r in ec2.describe_spot_instance_requests(Filters=[
            *run_tag, {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]],
        "groups": [g["GroupId"] for g in ec2.describe_security_groups(Filters=run_tag)["SecurityGroups"]],
        "templates": [t["LaunchTemplateId"] for t in ec2.describe_launch_templates(Filters=run_tag)["LaunchTemplates"]],
    }


def test_the_whole_lifecycle_bake_spot_workers_rules_and_a_teardown_that_leaves_nothing(aws, base_image, redis_flush):
    ec2 = aws
    params = _params(base_image)
    run = params["run"]
    state, builder = _provision(ec2, params)

    # the builder: launched from the base image with the install script, powered off, imaged, terminated
    assert len(builder.seen) == 1 and "pip install" in builder.user_data and "poweroff" in builder.user_data
    described = ec2.describe_instances(InstanceIds=builder.seen)["Reservations"][0]["Instances"][0]
    assert described["State"]["Name"] in ("shutting-down", "terminated")
    assert described["ImageId"] == params["ec2_base_ami_id"]
    image = ec2.describe_images(ImageIds=[state["image_id"]])["Images"][0]
    assert image["State"] == "available" and {TAG_RUN: run}.items() <= {t["Key"]: t["Value"] for t in image["Tags"]}.items()

    # the workers: N spot instances from the baked image, tagged with the run, with the join script
    workers = ec2.describe_instances(InstanceIds=[w["id"] for w in state["workers"]])["Reservations"]
    workers = [i for r in workers for i in r["Instances"]]
    assert len(workers) == 3
    for worker in workers:
        assert worker["ImageId"] == state["image_id"] and worker["InstanceType"] == "c6i.large"
        assert worker["InstanceLifecycle"] == "spot"
        tags = {t["Key"]: t["Value"] for t in worker["Tags"]}
        assert tags[TAG_RUN] == run and tags[TAG_ROLE] == "worker"
        assert [g["GroupId"] for g in worker["SecurityGroups"]] == [state["security_group_id"]]
    requests = ec2.describe_spot_instance_requests(Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [run]}])
    requests = requests["SpotInstanceRequests"]
    assert sorted(r["InstanceId"] for r in requests) == sorted(w["InstanceId"] for w in workers)
    assert [float(r["SpotPrice"]) for r in requests] == [0.031] * 3 and {r["Type"] for r in requests} == {"one-time"}
    opts = Ec2Options.from_params(params)
    for worker in workers:
        attr = ec2.describe_instance_attribute(InstanceId=worker["InstanceId"], Attribute="userData")
        assert base64.b64decode(attr["UserData"]["Value"]).decode() == worker_user_data(opts, Settings())

    # the group admits itself and the coordinator, on the fleet's ports only; nothing from anywhere
    group = ec2.describe_security_groups(GroupIds=[state["security_group_id"]])["SecurityGroups"][0]
    s = Settings()
    assert sorted(p["FromPort"] for p in group["IpPermissions"]) == sorted(
        {s.REDIS_PORT, s.KAFKA_PORT, s.POSTGRES_PORT, s.AIRFLOW_API_PORT, s.WORKER_LOG_PORT})
    for perm in group["IpPermissions"]:
        assert perm["IpProtocol"] == "tcp" and perm["FromPort"] == perm["ToPort"]
        assert [r["CidrIp"] for r in perm["IpRanges"]] == [f"{COORDINATOR}/32"]
        assert [p["GroupId"] for p in perm["UserIdGroupPairs"]] == [state["security_group_id"]]
        assert not perm.get("Ipv6Ranges")

    # the ids were on record in the run's Redis state, and the workers' config is published
    master = redis_flush.client()
    notes = Notes(run, master).read()
    assert notes["builder_id"] == builder.seen[0] and notes["image_id"] == state["image_id"]
    assert notes["worker_ids"] == [w["id"] for w in state["workers"]]
    assert notes["security_group_id"] == state["security_group_id"]
    assert sorted(notes["spot_request_ids"]) == sorted(r["SpotInstanceRequestId"] for r in requests)
    assert master.exists(WORKER_CONFIG_KEY) and master.exists(state_key(run))

    # the report's cost section reads the same record: 3 workers at most at the max price
    cost = fleet_cost_of_run(master, run, 1_000_000)["fleet_cost"]
    assert cost["instances"] == 3 and cost["price_per_hour"] == 0.031 and cost["instance_hours"] >= 0

    # teardown finds it all by the tag and leaves nothing (a launch template tagged with the run too);
    # the second finds nothing and says so
    template = ec2.create_launch_template(
        LaunchTemplateName=f"whoiscrawl-{run}", LaunchTemplateData={"ImageId": state["image_id"]},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": TAG_RUN, "Value": run}]}],
    )["LaunchTemplate"]["LaunchTemplateId"]
    first = Ec2Provider().teardown(state)
    assert template in first["released"]
    assert set(first["released"]) >= {*notes["worker_ids"], *notes["spot_request_ids"], state["image_id"],
                                      state["security_group_id"], *notes["snapshot_ids"]}
    assert _tagged(ec2, run) == {"instances": [], "images": [], "snapshots": [], "requests": [], "groups": [],
                                 "templates": []}
    assert ec2.describe_images(ImageIds=[state["image_id"]])["Images"] == [] or \
        ec2.describe_images(ImageIds=[state["image_id"]])["Images"][0]["State"] == "deregistered"
    second = Ec2Provider().teardown(state)
    assert second == {"released": [], "message": "nothing left to release"}


def test_teardown_finds_resources_by_tag_even_when_the_state_lost_them(aws, base_image):
    ec2 = aws
    params = _params(base_image, ec2_workers=2)
    state, _ = _provision(ec2, params)
    bare = {"kind": "ec2", "run": params["run"], "region": REGION}  # as if the task died before returning
    released = Ec2Provider().teardown(bare)["released"]
    assert {w["id"] for w in state["workers"]} <= set(released)
    assert _tagged(ec2, params["run"]) == {"instances": [], "images": [], "snapshots": [], "requests": [],
                                           "groups": [], "templates": []}


def test_an_existing_ami_is_reused_without_a_bake(aws, base_image):
    ec2 = aws
    image = base_image
    params = _params(base_image, ec2_ami_id=image, ec2_base_ami_id=None, ec2_project_url=None, ec2_workers=2)
    state, builder = _provision(ec2, params, power_off=False)
    assert builder.seen == [] and state["image_id"] == image
    assert all(w["id"] for w in state["workers"]) and len(state["workers"]) == 2
    Ec2Provider().teardown(state)
    assert ec2.describe_images(ImageIds=[image])["Images"][0]["State"] == "available"  # not ours: never released
    assert _tagged(ec2, params["run"])["instances"] == []


def test_keep_ami_leaves_the_baked_image_and_its_snapshots(aws, base_image):
    ec2 = aws
    params = _params(base_image, ec2_keep_ami=True, ec2_workers=1)
    state, _ = _provision(ec2, params)
    Ec2Provider().teardown(state)
    left = _tagged(ec2, params["run"])
    assert left["images"] == [state["image_id"]]
    assert left["instances"] == left["requests"] == left["groups"] == []


def test_a_bake_that_fails_terminates_the_builder_and_the_error_is_the_bakes(aws, base_image):
    ec2 = aws
    params = _params(base_image, ec2_bake_wait_s=2)  # the builder never powers off: its install hangs
    with pytest.raises(FleetError, match=r"bake failed: builder i-\w+ installing the project.*not done within 2 s"):
        _provision(ec2, params, power_off=False)
    left = _tagged(ec2, params["run"])
    assert left == {"instances": [], "images": [], "snapshots": [], "requests": [], "groups": [], "templates": []}
    builders = [i for r in ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_RUN}", "Values": [params["run"]]}])[
        "Reservations"] for i in r["Instances"]]
    assert builders and all(i["State"]["Name"] == "terminated" for i in builders)


def test_workers_that_never_join_fail_the_setup_with_a_clear_error_and_are_released(aws, base_image):
    ec2 = aws
    params = _params(base_image, ec2_workers=2)
    builder = Builder(ec2, params["run"])
    builder.start()
    recorded = []
    with pytest.raises(FleetError, match=r"EC2 workers not answering Celery after 1 s: i-\w+ \(whoiscrawl-"):
        provider = Ec2Provider()
        bring_up(provider, {**params, **provider.prepare_image(params)}, record=recorded.append)
    builder.done.set()
    builder.join(40)
    assert recorded and recorded[0]["workers"]
    assert _tagged(ec2, params["run"]) == {"instances": [], "images": [], "snapshots": [], "requests": [],
                                           "groups": [], "templates": []}


def test_missing_params_name_what_to_give():
    with pytest.raises(FleetError, match="ec2_coordinator.*ec2_ami_id"):
        Ec2Options.from_params({"run": "r"})


def test_run_files_go_to_s3_under_the_prefix_and_nowhere_without_one(aws, tmp_path):
    from whoiscrawl.orchestration.aws import s3_hook

    s3_hook().create_bucket(bucket_name="crawls", region_name=REGION)
    seed = tmp_path / "seed.sqlite"
    seed.write_bytes(b"SQLite format 3\x00 and the rest")
    url = copy_to_s3({"s3_prefix": "s3://crawls/whois/"}, "run_1", seed)
    assert url == "s3://crawls/whois/run_1/seed.sqlite"
    assert s3_hook().get_key("whois/run_1/seed.sqlite", "crawls").get()["Body"].read() == seed.read_bytes()
    assert copy_to_s3({"s3_prefix": None}, "run_1", seed) is None
    with pytest.raises(StorageError, match="s3://bucket/prefix"):
        copy_to_s3({"s3_prefix": "crawls/whois"}, "run_1", seed)
