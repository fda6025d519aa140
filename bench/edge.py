"""Hits at the edge: nginx serving stored derivatives with its cache on, against reading them from S3 every time.

    python bench/edge.py [--seconds 5] [--rounds 3]

moto's S3 server (in its own process) holds one stored derivative; two nginx servers rendered by
``resize-sidecar nginx`` serve it, one with ``NGINX_CACHE_SIZE`` set and one without, in front of one sidecar.
wrk drives each in turn (interleaved rounds, loopback only) and the medians go to ``bench/results/edge.md``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import boto3
from common import RESULTS, Spread, arguments, write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resize_sidecar.core.signing import format_path  # noqa: E402
from tests.support.environment import isolate  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.servers import (  # noqa: E402
    SECRET,
    MotoServer,
    NginxServer,
    SidecarServer,
    raw_get,
    sidecar_requests,
)


def wrk(url: str, seconds: int, connections: int = 8) -> float:
    """Requests per second wrk reaches against one URL."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    return float(match[1])


def main() -> int:
    isolate()  # credentials moto accepts, and none of the shell's RESIZE_SIDECAR_* settings
    args = arguments(__doc__, rounds=3, seconds=5).parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 1
    logs = Path(tempfile.mkdtemp(prefix="resize-sidecar-edge-"))
    with ExitStack() as stack:
        moto = stack.enter_context(MotoServer(logs))
        bucket = f"edge-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        public_derivatives = f"arn:aws:s3:::{bucket}/_r/*"
        statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": public_derivatives}
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
        s3.put_object(Bucket=bucket, Key="edge/photo.jpg", Body=photo(1600, 1200), ContentType="image/jpeg")
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "s3",
            "RESIZE_SIDECAR_S3_BUCKET": bucket,
            "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto.url,
        }
        sidecar = stack.enter_context(SidecarServer(env, logs))
        servers = {
            "straight from S3": stack.enter_context(NginxServer(env, sidecar_url=sidecar.url)),
            "nginx cache": stack.enter_context(
                NginxServer({**env, "RESIZE_SIDECAR_NGINX_CACHE_SIZE": "256m"}, sidecar_url=sidecar.url)
            ),
        }
        path = format_path("edge/photo.jpg", "400x", "jpg", SECRET)
        for server in servers.values():  # the first makes and stores it; the cache then holds it too
            assert raw_get(server.url, path)[0] == 200
            assert raw_get(server.url, path)[0] == 200
        reached = sidecar_requests(sidecar)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for round_number in range(args.rounds):
            order = list(servers.items())
            for name, server in order[round_number % 2 :] + order[: round_number % 2]:
                rates[name].append(wrk(server.url + path, args.seconds))
        assert sidecar_requests(sidecar) == reached, "a hit reached the sidecar"
    write(rates, seconds=args.seconds, rounds=args.rounds)
    return 0


def write(rates: dict[str, list[float]], *, seconds: int, rounds: int) -> None:
    measured = {name: Spread.of(values) for name, values in rates.items()}
    lines = [
        "# Hits at the edge: nginx's cache against reading S3 every time",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `python bench/edge.py --seconds {seconds} "
        f"--rounds {rounds}`; wrk -t2 -c8 on one stored 400 px JPEG derivative; moto's S3 server stands in "
        "for S3 (on loopback, so the gap to real S3 over a network is larger). No hit reached the sidecar.",
        "",
        "| nginx | req/s median | min–max |",
        "|---|---|---|",
        *(
            f"| {name} | {spread.median:,.0f} | {spread.low:,.0f}–{spread.high:,.0f} |"
            for name, spread in measured.items()
        ),
        "",
        f"Cache ÷ S3: **{measured['nginx cache'].median / measured['straight from S3'].median:.1f}×**.",
        "",
    ]
    print(write_results(RESULTS, "edge", "\n".join(lines)).read_text())


if __name__ == "__main__":
    sys.exit(main())
