"""An S3 API server on 127.0.0.1 for the tests (moto's server mode, from PyPI), reached as a user's S3 is:
through an Airflow connection of the Amazon provider (``conn_type`` ``aws``, ``endpoint_url`` in its extra).

The credentials are the server's stand-in ones (moto accepts any), never real secrets.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

KEY, SECRET, REGION = "reconcile-test-key", "reconcile-test-secret", "us-east-1"


@dataclass
class S3StandIn:
    endpoint: str

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY,
                            aws_secret_access_key=SECRET, region_name=REGION)  # fmt: skip

    def bucket(self, prefix: str = "reconcile") -> str:
        """A new empty bucket."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def connection(self) -> str:
        """The Airflow connection (as ``AIRFLOW_CONN_<ID>``'s JSON) a user would make for this S3."""
        return json.dumps({"conn_type": "aws", "login": KEY, "password": SECRET,
                           "extra": {"endpoint_url": self.endpoint, "region_name": REGION}})  # fmt: skip


@contextmanager
def running(port: int = 0) -> Iterator[S3StandIn]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield S3StandIn(f"http://{host}:{bound}")
    finally:
        server.stop()
