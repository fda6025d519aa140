"""The environment the suite and the benchmarks run in: credentials boto3 needs and moto accepts, and none of the
calling shell's settings."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: boto3 reads credentials from the environment before it makes a client; moto accepts any.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def isolate(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set the S3 credentials and drop every ``RESIZE_SIDECAR_*`` setting, so that what runs next (in this process
    or in the servers it starts) sees only the settings it is given."""
    environ.update(S3_CREDENTIALS)
    for name in [name for name in environ if name.startswith("RESIZE_SIDECAR_")]:
        del environ[name]
