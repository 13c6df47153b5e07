"""AWS through the amazon provider's hooks: every EC2 and S3 call of the project starts here.

The ``aws_default`` connection says where AWS is (credentials, region, and an
``endpoint_url`` extra for anything that speaks the API, such as a moto
server); nothing else builds a client. Waits are boto's waiters with an
explicit poll interval and attempt count, so each one is bounded and its
failure names what it waited for.
"""

from __future__ import annotations

from typing import Any

from whoiscrawl.errors import WhoiscrawlError

AWS_CONN_ID = "aws_default"


class AwsError(WhoiscrawlError):
    """An AWS call or wait failed; the message names the resource and the call."""


def ec2_client(region: str | None, conn_id: str = AWS_CONN_ID) -> Any:
    """boto3's EC2 client of ``EC2Hook`` (``client_type``), for the connection's endpoint."""
    from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook

    return EC2Hook(api_type="client_type", aws_conn_id=conn_id, region_name=region).conn


def s3_hook(conn_id: str = AWS_CONN_ID) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=conn_id)


def wait(client: Any, waiter: str, what: str, timeout_s: float, delay_s: float = 5.0, **kwargs: Any) -> None:
    """boto's ``waiter`` polled every ``delay_s`` for at most ``timeout_s``; :class:`AwsError` otherwise."""
    from botocore.exceptions import WaiterError

    attempts = max(1, int(timeout_s // max(delay_s, 0.1)))
    try:
        client.get_waiter(waiter).wait(WaiterConfig={"Delay": delay_s, "MaxAttempts": attempts}, **kwargs)
    except WaiterError as exc:
        raise AwsError(f"{what}: not done within {timeout_s:g} s ({waiter}: {exc})") from None


def tag_filter(key: str, value: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{key}", "Values": [value]}]
