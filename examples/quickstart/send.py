"""Send orders to the quickstart's queue: ``python send.py --endpoint URL [--count N] [--poison]``.

The URL is the one ``esm run … --embedded`` logs ("embedded AWS emulator (moto) at …"), or any
SQS endpoint (leave ``--endpoint`` out to use botocore's usual configuration).
"""

from __future__ import annotations

import argparse
import json
import os

import boto3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--endpoint", default=os.environ.get("AWS_ENDPOINT_URL"))
    p.add_argument("--queue", default="orders")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--poison", action="store_true", help="make the last order poison")
    args = p.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    sqs = boto3.client("sqs", endpoint_url=args.endpoint, region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=args.queue)["QueueUrl"]
    for i in range(args.count):
        order = {"id": 100 + i, "item": "sent by send.py"}
        if args.poison and i == args.count - 1:
            order["poison"] = True
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(order))
    print(f"sent {args.count} order(s) to {url}")


if __name__ == "__main__":
    main()
