"""EC2 spot workers: bake a worker AMI, launch N spot instances from it, release everything by the run's tag.

Every call goes through the amazon provider's hooks (:mod:`whoiscrawl.orchestration.aws`),
so the ``aws_default`` connection decides where AWS is. Every resource carries
the tag ``whoiscrawl:run=<run>``; its id goes to the run's Redis state
(``whoiscrawl:run:<run>:fleet:ec2``) the moment AWS returns it, and teardown finds what to
release by the tag, never by a value a wait returned. Workers join the fleet by
themselves (:mod:`~whoiscrawl.orchestration.fleet.worker_boot`), so
``workers_ready`` waits for Celery answers, not for EC2's ``running``.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from whoiscrawl.orchestration.aws import AwsError, ec2_client, tag_filter, wait
from whoiscrawl.orchestration.connections import url_login
from whoiscrawl.orchestration.fleet import celery as celery_fleet
from whoiscrawl.orchestration.fleet.base import FleetError, FleetProvider
from whoiscrawl.orchestration.fleet.worker_boot import WORKER_CONFIG_KEY, WORKER_SETTINGS, celery_hostname
from whoiscrawl.settings import Settings

log = logging.getLogger(__name__)

TAG_RUN = "whoiscrawl:run"
TAG_ROLE = "whoiscrawl:role"
#: Where the project lives on the builder and on every worker (its ``.venv`` beside it).
INSTALL_DIR = "/opt/whoiscrawl"
WORK_DIR = "/var/lib/whoiscrawl"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
#: Airflow settings every worker needs from the coordinator, published in Redis (section, key).
WORKER_AIRFLOW_CONFIG = (
    ("core", "executor"), ("database", "sql_alchemy_conn"), ("database", "sql_alchemy_conn_async"),
    ("celery", "broker_url"), ("celery", "result_backend"),
    ("celery_broker_transport_options", "visibility_timeout"), ("operators", "default_queue"),
    ("core", "execution_api_server_url"), ("api", "base_url"), ("api_auth", "jwt_secret"),
    ("api", "secret_key"), ("core", "fernet_key"), ("core", "hostname_callable"),
    ("logging", "worker_log_server_port"), ("core", "load_examples"), ("core", "max_map_length"),
)


@dataclass(frozen=True)
class Ec2Options:
    """The DAG's ``ec2_*`` Params, checked once."""

    run: str
    region: str
    workers: int
    instance_type: str
    max_price: float
    coordinator: str
    subnet_id: str | None = None
    security_group_id: str | None = None
    ami_id: str | None = None
    base_ami_id: str | None = None
    project_url: str | None = None
    keep_ami: bool = False
    install_dir: str = INSTALL_DIR
    work_dir: str = WORK_DIR
    bake_wait_s: float = 1800.0
    ready_wait_s: float = 900.0
    poll_s: float = 5.0

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Ec2Options":
        def get(name: str, default: Any = None) -> Any:
            value = params.get(f"ec2_{name}")
            return default if value in (None, "") else value

        opts = cls(run=str(params["run"]), region=get("region", "us-east-1"), workers=int(get("workers", 2)),
                   instance_type=get("instance_type", "c6i.large"), max_price=float(get("max_price", 0.05)),
                   coordinator=get("coordinator", ""), subnet_id=get("subnet_id"),
                   security_group_id=get("security_group_id"), ami_id=get("ami_id"),
                   base_ami_id=get("base_ami_id"), project_url=get("project_url"),
                   keep_ami=bool(get("keep_ami", False)), install_dir=get("install_dir", INSTALL_DIR),
                   work_dir=get("work_dir", WORK_DIR), bake_wait_s=float(get("bake_wait_s", 1800)),
                   ready_wait_s=float(get("ready_wait_s", 900)), poll_s=float(get("poll_s", 5)))
        problems = []
        if not opts.coordinator:
            problems.append("ec2_coordinator (the address the workers join) is required")
        if not opts.ami_id and not (opts.base_ami_id and opts.project_url):
            problems.append("give ec2_ami_id (a baked worker image), or ec2_base_ami_id and ec2_project_url to bake one")
        if opts.workers < 1:
            problems.append(f"ec2_workers={opts.workers}: at least 1")
        if opts.max_price <= 0:
            problems.append(f"ec2_max_price={opts.max_price}: a price per instance-hour above 0")
        if problems:
            raise FleetError("fleet=ec2: " + "; ".join(problems))
        return opts


# --- user-data ---------------------------------------------------------------------------------
def builder_user_data(opts: Ec2Options) -> str:
    """Install the project and the worker's services, then power off: the bake waits for ``stopped``."""
    q = shlex.quote
    venv = f"{opts.install_dir}/.venv"
    return f"""#!/bin/bash
# whoiscrawl builder: installs the project and the worker's services, then powers off.
set -euxo pipefail
trap 'echo "WHOISCRAWL-BAKE-FAILED line $LINENO" > /dev/console' ERR
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y python3-venv redis-server curl ca-certificates
systemctl disable --now redis-server
mkdir -p {q(opts.install_dir)}
curl -fsSL {q(opts.project_url or '')} | tar -xz -C {q(opts.install_dir)} --strip-components=1
python3 -m venv {q(venv)}
{q(venv)}/bin/pip install -q -r {q(opts.install_dir)}/requirements.txt
{q(venv)}/bin/pip install -q --no-deps -e {q(opts.install_dir)}
{q(venv)}/bin/python -c "import whoiscrawl.orchestration.fleet.worker_boot"
cloud-init clean --logs
echo "WHOISCRAWL-BAKE-DONE" > /dev/console
poweroff
"""


def worker_user_data(opts: Ec2Options, settings: Settings, broker_login: tuple[str, str] | None = None) -> str:
    """Join the coordinator's fleet at boot; the same script for every worker, nothing per host.

    ``broker_login``: the Celery broker's Redis login, the one secret the script carries (EC2 keeps
    user-data readable from the instance's metadata service: docs/security.md). It goes to a 0600 file
    that only the boot reads, never to a command line.
    """
    q = shlex.quote
    join = f"{opts.work_dir}/join.json"
    boot = [f"{opts.install_dir}/.venv/bin/python", "-m", "whoiscrawl.orchestration.fleet.worker_boot",
            "--coordinator", opts.coordinator, "--redis-port", str(settings.REDIS_PORT),
            "--replica-port", str(settings.REPLICA_PORT), "--work-dir", opts.work_dir, "--join-file", join]
    user, password = broker_login or ("", "")
    login = json.dumps({"user": user, "password": password})
    return f"""#!/bin/bash
# whoiscrawl worker: a Redis replica of the coordinator and a Celery worker, started once the
# coordinator's config is in Redis (worker_boot waits and retries).
set -eu
umask 077
mkdir -p {q(opts.work_dir)}
cat > {q(join)} <<'WHOISCRAWL_JOIN'
{login}
WHOISCRAWL_JOIN
setsid nohup {' '.join(q(a) for a in boot)} >> {q(opts.work_dir + '/boot.log')} 2>&1 < /dev/null &
"""


def broker_url() -> str:
    """The Celery broker's URL from this process's Airflow configuration (workers use the same)."""
    from airflow.configuration import conf

    return conf.get("celery", "broker_url")


def broker_client(url: str):
    """The coordinator's Redis (database 0) with the broker's login: the worker config lives there."""
    from urllib.parse import urlsplit

    import redis

    parts = urlsplit(url)
    login = url_login(url)
    auth = {"username": login[0], "password": login[1]} if login else {}
    return redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=0, socket_timeout=10,
                       socket_connect_timeout=5, **auth)


def publish_worker_config(settings: Settings) -> dict[str, Any]:
    """The coordinator's settings and logins that workers need, written to Redis for their boot to read."""
    from airflow.configuration import conf

    from whoiscrawl.orchestration.connections import master_url, redis_login

    env = {}
    for section, key in WORKER_AIRFLOW_CONFIG:
        value = conf.get(section, key, fallback=None)
        if value not in (None, ""):
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = str(value)
    crawl = url_login(master_url(settings))
    replica = redis_login("redis_replication")
    config = {"env": env, "queue": conf.get("operators", "default_queue"),
              "concurrency": int(settings.WORKER_CONCURRENCY),
              "redis": {"crawl": crawl[1] if crawl else None, "replica": replica[1] if replica else None},
              "settings": {name: getattr(settings, name) for name in WORKER_SETTINGS if getattr(settings, name)}}
    client = broker_client(broker_url())
    try:
        client.set(WORKER_CONFIG_KEY, json.dumps(config))
    finally:
        client.close()
    return config


def spot_options(max_price: float) -> dict[str, Any]:
    """One-time spot at most ``max_price`` per instance-hour; an interrupted worker is gone (Airflow retries its chunks)."""
    return {"MarketType": "spot", "SpotOptions": {"MaxPrice": f"{max_price:.4f}", "SpotInstanceType": "one-time",
                                                  "InstanceInterruptionBehavior": "terminate"}}


# --- the run's record in Redis -------------------------------------------------------------------
def state_key(run: str) -> str:
    return f"whoiscrawl:run:{run}:fleet:ec2"  # in the run's namespace: the crawl user may reach it, keep_alive keeps it


class Notes:
    """Resource ids in the run's Redis state, written as soon as AWS returns them."""

    def __init__(self, run: str, master=None) -> None:
        if master is None:
            from whoiscrawl.orchestration.connections import redis_clients

            master, _ = redis_clients(Settings())
        self.master, self.key = master, state_key(run)

    def __call__(self, field: str, value: Any) -> None:
        self.master.hset(self.key, field, json.dumps(value))

    def read(self) -> dict[str, Any]:
        return {k.decode(): json.loads(v) for k, v in self.master.hgetall(self.key).items()}


def _tags(run: str, role: str) -> list[dict[str, str]]:
    return [{"Key": TAG_RUN, "Value": run}, {"Key": TAG_ROLE, "Value": role}, {"Key": "Name", "Value": f"whoiscrawl-{role}"}]


def _spec(resource: str, run: str, role: str) -> dict[str, Any]:
    return {"ResourceType": resource, "Tags": _tags(run, role)}


def _quietly(what: str, action: Callable[[], Any]) -> None:
    """Cleanup while an error is on its way up: log a failure, never replace the original error."""
    try:
        action()
    except Exception:  # noqa: BLE001 - the error the user must see is the one already raised
        log.exception("cleanup after a failure: %s failed too (the original error follows)", what)


# --- the provider --------------------------------------------------------------------------------
class Ec2Provider(FleetProvider):
    """N spot workers from a baked AMI, in a security group of their own, joined to this coordinator."""

    kind = "ec2"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()

    # provision ----------------------------------------------------------------------------------
    def provision(self, params: dict[str, Any]) -> dict[str, Any]:
        opts = Ec2Options.from_params(params)
        notes = Notes(opts.run)
        ec2 = ec2_client(opts.region)
        state: dict[str, Any] = {"kind": self.kind, "run": opts.run, "region": opts.region,
                                 "keep_ami": opts.keep_ami, "max_price": opts.max_price,
                                 "instance_type": opts.instance_type, "ready_wait_s": opts.ready_wait_s,
                                 "poll_s": opts.poll_s, "coordinator": opts.coordinator}
        notes("options", state)
        # an earlier try of this task may have left workers: release them (a baked image is reused)
        self.release(ec2, opts.run, keep_image=True, poll_s=opts.poll_s, quiet=True)
        try:
            publish_worker_config(self.settings)
            state["security_group_id"] = self._security_group(ec2, opts, notes)
            state["image_id"] = self._image(ec2, opts, notes)
            state["workers"] = self._launch_workers(ec2, opts, state, notes)
        except BaseException:
            _quietly(f"releasing run {opts.run}",
                     lambda: self.release(ec2, opts.run, keep_image=opts.keep_ami, poll_s=opts.poll_s))
            raise
        return state

    def _security_group(self, ec2, opts: Ec2Options, notes: Notes) -> str:
        """The given group, else one admitting only itself and the coordinator on the fleet's ports."""
        if opts.security_group_id:
            return opts.security_group_id
        if opts.subnet_id:
            vpc = ec2.describe_subnets(SubnetIds=[opts.subnet_id])["Subnets"][0]["VpcId"]
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise FleetError(f"region {opts.region} has no default VPC: give ec2_subnet_id")
            vpc = vpcs[0]["VpcId"]
        group = ec2.create_security_group(GroupName=f"whoiscrawl-{opts.run}"[:255], VpcId=vpc,
                                          Description=f"whoiscrawl fleet of run {opts.run}",
                                          TagSpecifications=[_spec("security-group", opts.run, "fleet")])["GroupId"]
        notes("security_group_id", group)
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=self.ingress_rules(group, opts.coordinator))
        return group

    def fleet_ports(self) -> list[int]:
        """Redis (crawl state and Celery broker), Kafka, PostgreSQL, the execution API, task logs."""
        s = self.settings
        return sorted({int(s.REDIS_PORT), int(s.KAFKA_PORT), int(s.POSTGRES_PORT), int(s.AIRFLOW_API_PORT),
                       int(s.WORKER_LOG_PORT)})

    def ingress_rules(self, group: str, coordinator: str) -> list[dict[str, Any]]:
        return [{"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                 "UserIdGroupPairs": [{"GroupId": group, "Description": "the fleet's own hosts"}],
                 "IpRanges": [{"CidrIp": f"{coordinator}/32", "Description": "the coordinator"}]}
                for port in self.fleet_ports()]

    def prepare_image(self, params: dict[str, Any]) -> dict[str, Any]:
        """``{"ec2_ami_id": ...}``: the given image, one an earlier try baked, or one baked now."""
        opts = Ec2Options.from_params(params)
        ec2 = ec2_client(opts.region)
        if opts.ami_id:
            return {"ec2_ami_id": opts.ami_id}
        # a builder an earlier try left running is of no use: release it (a baked image is reused)
        self.release(ec2, opts.run, keep_image=True, poll_s=opts.poll_s, quiet=True)
        try:
            return {"ec2_ami_id": self._image(ec2, opts, Notes(opts.run))}
        except BaseException:
            _quietly(f"releasing the bake of run {opts.run}",
                     lambda: self.release(ec2, opts.run, keep_image=opts.keep_ami, poll_s=opts.poll_s))
            raise

    def _image(self, ec2, opts: Ec2Options, notes: Notes) -> str:
        if opts.ami_id:
            return opts.ami_id
        earlier = ec2.describe_images(Owners=["self"], Filters=tag_filter(TAG_RUN, opts.run))["Images"]
        ready = [i["ImageId"] for i in earlier if i.get("State") == "available"]
        if ready:
            log.info("reusing image %s baked by an earlier try", ready[0])
            return ready[0]
        return self.bake(ec2, opts, notes)

    def bake(self, ec2, opts: Ec2Options, notes: Notes) -> str:
        """Builder from the base image, wait until it has installed and powered off, image, builder gone.

        The builder needs no inbound traffic: it gets the VPC's default group.
        """
        launch = dict(ImageId=opts.base_ami_id, InstanceType=opts.instance_type, MinCount=1, MaxCount=1,
                      UserData=builder_user_data(opts), InstanceInitiatedShutdownBehavior="stop",
                      TagSpecifications=[_spec("instance", opts.run, "builder"), _spec("volume", opts.run, "builder")])
        if opts.subnet_id:
            launch["SubnetId"] = opts.subnet_id
        builder = ec2.run_instances(**launch)["Instances"][0]["InstanceId"]
        notes("builder_id", builder)
        log.info("builder %s launched from %s", builder, opts.base_ami_id)
        try:
            try:
                wait(ec2, "instance_stopped", f"builder {builder} installing the project (its user-data powers it "
                     f"off when done; see its console output for WHOISCRAWL-BAKE-FAILED)",
                     opts.bake_wait_s, opts.poll_s, InstanceIds=[builder])
            except AwsError as exc:
                raise FleetError(f"bake failed: {exc}") from None
            image = ec2.create_image(InstanceId=builder, Name=f"whoiscrawl-worker-{opts.run}"[:128],
                                     Description=f"whoiscrawl worker baked for run {opts.run}")["ImageId"]
            notes("image_id", image)
            ec2.create_tags(Resources=[image], Tags=_tags(opts.run, "worker-image"))
            try:
                wait(ec2, "image_available", f"image {image} of builder {builder}", opts.bake_wait_s, opts.poll_s,
                     ImageIds=[image])
            except AwsError as exc:
                raise FleetError(f"bake failed: {exc}") from None
            snapshots = [m["Ebs"]["SnapshotId"] for i in ec2.describe_images(ImageIds=[image])["Images"]
                         for m in i.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]
            if snapshots:
                notes("snapshot_ids", snapshots)
                ec2.create_tags(Resources=snapshots, Tags=_tags(opts.run, "worker-image"))
        except BaseException:
            _quietly(f"terminating builder {builder}", lambda: ec2.terminate_instances(InstanceIds=[builder]))
            raise
        ec2.terminate_instances(InstanceIds=[builder])
        log.info("image %s baked; builder %s terminated", image, builder)
        return image

    def launch_specification(self, ec2, opts: Ec2Options, state: dict[str, Any]) -> dict[str, Any]:
        """What every worker is launched with: the image, the type, the group and the join script."""
        spec: dict[str, Any] = {
            "ImageId": state["image_id"], "InstanceType": opts.instance_type,
            "UserData": base64.b64encode(worker_user_data(opts, self.settings, url_login(broker_url())).encode()
                                         ).decode("ascii")}
        if opts.subnet_id:
            spec["NetworkInterfaces"] = [{"DeviceIndex": 0, "SubnetId": opts.subnet_id,
                                          "Groups": [state["security_group_id"]]}]
        else:  # the default VPC: spot requests name the group (SecurityGroupIds is not honoured everywhere)
            spec["SecurityGroups"] = [g["GroupName"] for g in ec2.describe_security_groups(
                GroupIds=[state["security_group_id"]])["SecurityGroups"]]
        return spec

    def _launch_workers(self, ec2, opts: Ec2Options, state: dict[str, Any], notes: Notes) -> list[dict[str, Any]]:
        """N one-time spot requests at most at the max price; their instances tagged as soon as they exist."""
        requests = [r["SpotInstanceRequestId"] for r in ec2.request_spot_instances(
            SpotPrice=f"{opts.max_price:.4f}", InstanceCount=opts.workers, Type="one-time",
            InstanceInterruptionBehavior="terminate", LaunchSpecification=self.launch_specification(ec2, opts, state),
            TagSpecifications=[_spec("spot-instances-request", opts.run, "worker")])["SpotInstanceRequests"]]
        notes("spot_request_ids", requests)
        log.info("%d spot requests at most %.4f/h each: %s", len(requests), opts.max_price, ", ".join(requests))
        try:
            wait(ec2, "spot_instance_request_fulfilled", f"spot requests {', '.join(requests)} (capacity at "
                 f"{opts.max_price:.4f}/h for {opts.instance_type} in {opts.region})", opts.ready_wait_s, opts.poll_s,
                 SpotInstanceRequestIds=requests)
            ids = [r["InstanceId"] for r in ec2.describe_spot_instance_requests(
                SpotInstanceRequestIds=requests)["SpotInstanceRequests"]]
            notes("worker_ids", ids)
            ec2.create_tags(Resources=ids, Tags=_tags(opts.run, "worker"))
            wait(ec2, "instance_running", f"spot workers {', '.join(ids)}", opts.ready_wait_s, opts.poll_s,
                 InstanceIds=ids)
        except AwsError as exc:
            raise FleetError(str(exc)) from None
        workers = [{"id": i["InstanceId"], "address": i.get("PrivateIpAddress", ""),
                    "launch_time": _iso(i["LaunchTime"]), "spot_request": i.get("SpotInstanceRequestId")}
                   for r in ec2.describe_instances(InstanceIds=ids)["Reservations"] for i in r["Instances"]]
        notes("workers", workers)
        return workers

    # workers_ready --------------------------------------------------------------------------------
    def workers_ready(self, state: dict[str, Any]) -> dict[str, Any]:
        """Every worker answers a Celery ping under its boot's name; a bounded wait, then the missing ones."""
        wanted = {celery_hostname(w["address"]): w["id"] for w in state["workers"]}
        wait_s, poll_s = float(state["ready_wait_s"]), float(state["poll_s"])
        deadline = time.monotonic() + wait_s
        while True:
            answering = set(celery_fleet.celery_workers())
            if set(wanted) <= answering:
                return {"hosts": sorted(wanted)}
            if time.monotonic() >= deadline:
                missing = sorted(f"{wanted[n]} ({n})" for n in set(wanted) - answering)
                raise FleetError(f"EC2 workers not answering Celery after {wait_s:g} s: {', '.join(missing)}; "
                                 f"the instances run but have not joined (security group rules, the coordinator "
                                 f"address, or the worker's {WORK_DIR}/boot.log)")
            time.sleep(poll_s)

    # teardown -------------------------------------------------------------------------------------
    def teardown(self, state: dict[str, Any]) -> dict[str, Any]:
        return self.release(ec2_client(state["region"]), state["run"], keep_image=bool(state.get("keep_ami")),
                            poll_s=float(state.get("poll_s", 5)))

    def release(self, ec2, run: str, keep_image: bool, poll_s: float = 5.0, wait_s: float = 600.0,
                quiet: bool = False) -> dict[str, Any]:
        """Everything tagged with the run: spot requests, instances (waited on), launch templates, the group,
        the image and snapshots."""
        released: list[str] = []
        run_tag = tag_filter(TAG_RUN, run)
        requests = ec2.describe_spot_instance_requests(
            Filters=[*run_tag, {"Name": "state", "Values": ["open", "active"]}])["SpotInstanceRequests"]
        if requests:
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[r["SpotInstanceRequestId"] for r in requests])
            released += [r["SpotInstanceRequestId"] for r in requests]
        # a request's instance may not carry the tag yet (tagged right after fulfilment): found through the request
        candidates = {r["InstanceId"] for r in requests if r.get("InstanceId")}
        candidates |= {i["InstanceId"] for r in ec2.describe_instances(Filters=run_tag)["Reservations"]
                       for i in r["Instances"]}
        instances = sorted(i["InstanceId"] for r in ec2.describe_instances(
            InstanceIds=sorted(candidates), Filters=[{"Name": "instance-state-name", "Values": LIVE_STATES}])[
            "Reservations"] for i in r["Instances"]) if candidates else []
        if instances:
            ec2.terminate_instances(InstanceIds=instances)
            wait(ec2, "instance_terminated", f"terminating {', '.join(instances)}", wait_s, poll_s,
                 InstanceIds=instances)
            released += instances
        # none of ours (workers are spot requests with a launch specification), but one tagged with the run
        # (an operator's, an EC2 Fleet's) would outlive it: teardown leaves nothing of the run
        for template in ec2.describe_launch_templates(Filters=run_tag)["LaunchTemplates"]:
            ec2.delete_launch_template(LaunchTemplateId=template["LaunchTemplateId"])
            released.append(template["LaunchTemplateId"])
        for group in ec2.describe_security_groups(Filters=run_tag)["SecurityGroups"]:
            ec2.delete_security_group(GroupId=group["GroupId"])
            released.append(group["GroupId"])
        if not keep_image:
            for image in ec2.describe_images(Owners=["self"], Filters=run_tag)["Images"]:
                ec2.deregister_image(ImageId=image["ImageId"])
                released.append(image["ImageId"])
            for snapshot in ec2.describe_snapshots(OwnerIds=["self"], Filters=run_tag)["Snapshots"]:
                ec2.delete_snapshot(SnapshotId=snapshot["SnapshotId"])
                released.append(snapshot["SnapshotId"])
        if released:
            log.info("run %s: released %s", run, ", ".join(released))
        elif not quiet:
            log.info("run %s: nothing tagged %s=%s is left to release", run, TAG_RUN, run)
        return {"released": released,
                "message": f"released {len(released)} resources" if released else "nothing left to release"}


def fleet_cost_of_run(master, run: str, addresses_covered: int) -> dict[str, Any]:
    """``{"fleet_cost": ...}`` for a run whose workers were EC2 instances, else ``{}`` (for the report).

    The workers still run while the report is made (teardown comes after it), so
    their hours count until now; the max price bounds what an hour cost.
    """
    from whoiscrawl.results.cost import fleet_cost

    notes = Notes(run, master).read()
    if not notes.get("workers"):
        return {}
    return {"fleet_cost": fleet_cost(notes["workers"], float(notes["options"]["max_price"]), addresses_covered)}


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return str(value)


__all__ = ["Ec2Options", "Ec2Provider", "Notes", "builder_user_data", "publish_worker_config", "state_key",
           "worker_user_data"]
