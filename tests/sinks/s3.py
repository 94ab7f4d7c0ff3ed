"""Reaching the test S3 store (the ``s3_endpoint`` fixture of tests/sinks/conftest.py)."""

from __future__ import annotations

import boto3


def s3_bucket(endpoint: str, bucket: str) -> dict[str, str]:
    """Create ``bucket`` on the store; the deltalake storage options that reach it."""
    keys = {"aws_access_key_id": "test", "aws_secret_access_key": "test", "region_name": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, **keys).create_bucket(Bucket=bucket)
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "conditional_put": "etag",  # commits are conditional PUTs (If-None-Match): no lock table
    }
