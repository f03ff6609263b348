"""Create what ``examples/compose/esm.yaml`` uses in the AWS emulator; safe to run again.

::

    AWS_ENDPOINT_URL=http://localhost:5000 python examples/compose/setup.py [--prefix NAME-]

- SQS ``orders`` (visibility timeout 10 s; redrive to ``orders-dlq`` after 2 receives) and
  ``orders-dlq``: the source of the config's event source mapping;
- SQS ``orders-succeeded`` and ``orders-failed``: the asynchronous invocations' destinations;
- DynamoDB ``orders`` (key ``id``): where the function saves orders.

``--prefix`` puts a prefix on every name (several stacks on one emulator; the tests use it).
In the compose stack the ``setup`` service runs this once, before esm starts: esm checks, as
Lambda does, that a mapping's queue exists. Needs boto3 only (the emulator's image has it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import boto3

QUEUE_VISIBILITY_S = 10  # at least the function's Timeout (Lambda's rule, checked by esm)
MAX_RECEIVE_COUNT = 2


def setup(prefix: str = "") -> dict[str, str]:
    """Create the queues and the table; returns ``queue NAME`` → URL, ``table NAME`` → ARN."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint)
    made: dict[str, str] = {}

    def queue(name: str, **attributes: str) -> str:
        url: str = sqs.create_queue(QueueName=prefix + name, Attributes=attributes)["QueueUrl"]
        made[f"queue {prefix}{name}"] = url
        return url

    dlq_url = queue("orders-dlq")
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    queue(
        "orders",
        VisibilityTimeout=str(QUEUE_VISIBILITY_S),
        RedrivePolicy=json.dumps(redrive),
    )
    queue("orders-succeeded")
    queue("orders-failed")

    table = prefix + "orders"
    try:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass  # already there: running again is fine
    made[f"table {table}"] = dynamodb.describe_table(TableName=table)["Table"]["TableArn"]
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--prefix", default="", help="a prefix for every queue and table name")
    args = p.parse_args(argv)
    for what, where in setup(args.prefix).items():
        print(f"{what}: {where}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
