"""The control plane through Lambda's API, as boto3 and the AWS CLI drive it.

Each test runs in-process engines (``Engine`` + ``esm.api.serve(engine, port=0)``) with the
registry on the real Redis under a key prefix of its own (deleted after), SQS, Kinesis and
DynamoDB Streams in moto's server, and ``python:`` handlers that record what they get
(:mod:`tests.fixtures.recorder`). What is checked is what a user sees: the answers, their
status codes and errors, and what happens to the messages on the queue.

boto3 checks ranges and required members before sending; the tests of the server's own checks
use a client with ``parameter_validation=False`` (``node.raw``), or raw HTTP where boto3 cannot
send the request at all (a Create-only member on Update).

One module per operation (mappings: create, update and delete, list, shared by daemons; event
invoke configs; functions and concurrency; /metrics, /health and the AWS CLI); their helpers are
in :mod:`tests.control_support`, their fixtures here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from esm.aws import AwsClients
from tests.control_support import ControlWorld
from tests.support import Queues


@pytest.fixture
async def world(aws: AwsClients, store_url: str) -> AsyncIterator[ControlWorld]:
    """Engines on the shared Redis, or on the Redis kind the test is parametrized with."""
    w = ControlWorld(aws, store_url)
    yield w
    await w.aclose()


@pytest.fixture
def queues(aws: AwsClients) -> Queues:
    return Queues(aws)
