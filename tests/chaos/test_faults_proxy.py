"""The fault proxy's errors are the ones AWS clients retry: botocore (standard mode, as esm's
aiobotocore clients use it) and esm's own JSON-protocol path (:mod:`esm.awsjson`) make their
three attempts and end with the service's throttling code, a 5xx, or a connection error."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.retries.standard import ExponentialBackoff

from esm.aws import AwsClients
from esm.awsjson import THROTTLING_CODES
from tests.chaos.faults import FaultyProxy
from tests.support import REGION, serve_app

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

CALLS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # service: (botocore method, operation, params): calls that fail before the emulator sees
    # them, so no resource needs to exist
    "sqs": ("list_queues", "ListQueues", {}),
    "kinesis": ("list_streams", "ListStreams", {}),
    "dynamodbstreams": ("list_streams", "ListStreams", {}),
}
EXPECTED_THROTTLE = {
    "sqs": "RequestThrottled",
    "kinesis": "ProvisionedThroughputExceededException",
    "dynamodbstreams": "ThrottlingException",
}


CASES = [(service, "throttle") for service in sorted(CALLS)] + [
    ("sqs", fault)
    for fault in ("500", "503", "reset")  # the others' 5xx are the same shape
]


async def test_each_fault_is_retried_by_botocore_and_by_esm(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # whether botocore tries again is what is tested, not how long it waits (up to 1 s, then 2)
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    proxy = FaultyProxy(moto_url, rate=1.0, seed=0)
    async with serve_app(proxy.app()) as port:
        aws = AwsClients(endpoint_url=f"http://127.0.0.1:{port}")
        try:
            for service, fault in CASES:
                proxy.kinds = (fault,)
                for path in ("botocore", "esm"):
                    await check(aws, proxy, service, fault, path)
        finally:
            await aws.aclose()


async def check(aws: AwsClients, proxy: FaultyProxy, service: str, fault: str, path: str) -> None:
    method, operation, params = CALLS[service]
    what = (service, fault, path)
    proxy.calls.clear()
    with pytest.raises((ClientError, EndpointConnectionError)) as info:
        if path == "botocore":
            client = await aws.client(service, REGION)
            await getattr(client, method)(**params)
        else:
            await (await aws.json(service, REGION)).call(operation, params)
    # tried again twice; a reset on a kept-alive connection may be tried once more at once by
    # esm.http1 (it cannot tell it from a connection the server closed while idle)
    tries = sum(proxy.calls.values())
    assert tries == 3 or (fault, path, tries) == ("reset", "esm", 4), (what, proxy.calls)
    if fault == "reset":
        assert isinstance(info.value, EndpointConnectionError), (what, info.value)
        return
    assert isinstance(info.value, ClientError), (what, info.value)
    error = info.value.response["Error"]
    status = info.value.response["ResponseMetadata"]["HTTPStatusCode"]
    if fault == "throttle":
        assert error["Code"] == EXPECTED_THROTTLE[service], (what, error)
        assert error["Code"] in THROTTLING_CODES
        assert status == 400, what
    else:
        assert status == int(fault), (what, status)
