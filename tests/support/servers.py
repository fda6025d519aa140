"""Real servers for end-to-end tests: gunicorn and nginx as subprocesses on free loopback ports.

Each is a context manager that starts the process, waits until it answers, and stops it (and its children);
output goes to a log file whose tail is shown when start-up fails. The benchmarks (``bench/servers.py``) build
on the same helpers.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

from resize_sidecar.core.settings import Settings, StorageKind
from resize_sidecar.core.signing import format_path

#: The signing secret of the servers and URLs of the test suite (here, not in conftest, so that the benchmark can
from resize_sidecar.media.storage import Storage
from resize_sidecar.media.stores import open_storage

#: The signing secret of the servers and URLs of the test suite (here, not in conftest, so that the benchmark can
#: import these helpers without conftest's changes to the environment).
SECRET = "test-secret-0123456789abcdef"

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_binary(*, in_test: bool = True) -> str:
    """The Debian nginx; skips the test where it is missing (and fails it on CI, which must install it).

    Outside a test (``in_test=False``: the benchmarks) a missing nginx is a RuntimeError instead.
    """
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        if not in_test:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        message = "nginx is not installed (apt-get install nginx); `make test` installs it when run as root"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def world_readable_dir(prefix: str, parent: Path | None = None) -> Path:
    """A new folder in ``parent`` (default: TMPDIR) that nginx's workers (user nobody) can enter; pytest's
    tmp_path is 0700."""
    path = (parent or Path(os.environ.get("TMPDIR", "/tmp"))) / f"{prefix}{os.urandom(6).hex()}"
    path.mkdir(mode=0o755, parents=True)
    path.chmod(0o755)
    return path


class Server:
    """A subprocess that serves HTTP on 127.0.0.1:port, in its own process group; ``name`` is for messages."""

    ready_path = "/"
    #: Seconds a new server has to answer.
    ready_timeout = 20.0
    #: What :meth:`stop` sends the process group.
    stop_signal = signal.SIGTERM

    def __init__(
        self,
        command: list[str],
        *,
        port: int,
        log: Path,
        env: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or command[0]
        self.command = command
        self.port = port
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float | None = None) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process, without waiting (several servers can then start at once)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True
            )

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the server answers HTTP; stop it and raise if it exits or stays silent."""
        assert self.process is not None, "launch() first"
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log_tail()}")

    def answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", self.ready_path)
            return connection.getresponse().status < 500
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class SidecarServer(Server):
    """The sidecar as users run it: ``resize-sidecar serve`` (gunicorn), settings from the environment."""

    ready_path = "/healthz"
    # Stopped as a crash stops it. A graceful stop (SIGTERM) keeps nginx's kept-alive connections open 2 s more
    # (gthread's STOP_KEEPALIVE_LINGER), which summed to 80 s of the end-to-end tests, and gunicorn's quick one
    # (SIGQUIT) left a gthread worker waiting on its threads until the arbiter's 10 s were up.
    stop_signal = signal.SIGKILL

    def __init__(self, env: dict[str, str], log_dir: Path, *, workers: int = 2) -> None:
        port = free_port()
        command = [sys.executable, "-m", "resize_sidecar.ops.cli", "serve", "--bind", f"127.0.0.1:{port}"]
        # Locks and transform slots are per node: servers of other tests (or test runs) must not share them. Its metric
        # files are kept beside them: a killed server does not remove the folder it would have made.
        metrics = log_dir / f"metrics-{port}"
        metrics.mkdir(parents=True)
        locks = log_dir / f"locks-{port}"
        env = {"RESIZE_SIDECAR_LOCK_DIR": str(locks), "PROMETHEUS_MULTIPROC_DIR": str(metrics), **env}
        super().__init__([*command, "--workers", str(workers)], port=port, log=log_dir / f"sidecar-{port}.log", env=env)


class GunicornServer(Server):
    """Any WSGI application under gunicorn, e.g. ``examples.gallery:application``."""

    stop_signal = SidecarServer.stop_signal

    def __init__(self, app: str, env: dict[str, str], log_dir: Path, *, workers: int = 1) -> None:
        port = free_port()
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers), app]
        super().__init__(command, port=port, log=log_dir / f"gunicorn-{port}.log", env=env)


class NginxServer(Server):
    """Debian's nginx with a configuration rendered by ``resize-sidecar nginx``, in its own prefix folder: the whole
    file, or with ``snippet`` the snippet and its http part in a server of an nginx.conf shaped like Debian's."""

    ready_path = "/nginx-not-a-route"

    def __init__(
        self, env: dict[str, str], *, sidecar_url: str, app_url: str | None = None, snippet: bool = False
    ) -> None:
        binary = nginx_binary()
        port = free_port()
        self.prefix = world_readable_dir("resize-sidecar-nginx-")

        def render(*options: str) -> str:
            command = [sys.executable, "-m", "resize_sidecar.ops.cli", "nginx", *options]
            done = subprocess.run(command, env={**os.environ, **env}, cwd=REPO, check=True, capture_output=True)
            return done.stdout.decode()

        if snippet:
            assert app_url is None, "a snippet serves media only"
            self.config = render("--snippet", "--sidecar", sidecar_url)
            (self.prefix / "media.conf").write_text(self.config)
            (self.prefix / "http.conf").write_text(render("--snippet-http", "--sidecar", sidecar_url))
            (self.prefix / "nginx.conf").write_text(debian_like_nginx_conf(self.prefix, port))
        else:
            self.config = render("--listen", f"127.0.0.1:{port}", "--sidecar", sidecar_url, *(
                ["--app", app_url] if app_url else []
            ))
            (self.prefix / "nginx.conf").write_text(self.config)
        command = [binary, "-p", f"{self.prefix}/", "-c", str(self.prefix / "nginx.conf"), "-e", "stderr"]
        super().__init__([*command, "-g", "daemon off;"], port=port, log=self.prefix / "nginx.log", env=env)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def debian_like_nginx_conf(prefix: Path, port: int) -> str:
    """An nginx.conf as Debian's (njs loaded, its types, the snippet's http part from conf.d), with a server that
    includes the snippet; its logs and temporary files under ``prefix``."""
    main = [line.removeprefix("#   ") for line in (prefix / "http.conf").read_text().splitlines() if line[:4] == "#   "]
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temporary = " ".join(f"{kind}_temp_path {kind}_temp;" for kind in kinds)
    return "\n".join([
        *main,
        "pid nginx.pid;",
        "error_log error.log warn;",
        "events { worker_connections 1024; }",
        "http {",
        "    include /etc/nginx/mime.types;",
        "    default_type application/octet-stream;",
        "    access_log access.log;",
        "    sendfile on;",
        f"    {temporary}",
        f"    include {prefix}/http.conf;",
        "    server {",
        f"        listen 127.0.0.1:{port};",
        "        server_name _;",
        f"        include {prefix}/media.conf;",
        "    }",
        "}",
        "",
    ])  # fmt: skip


def raw_get(
    base_url: str,
    raw_path: str,
    method: str = "GET",
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent byte for byte (HTTP clients would normalise dot segments or encodings)."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, raw_path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


class MotoServer(Server):
    """moto's S3 server in its own process, for settings that are process-wide in moto (enforced auth)."""

    ready_path = "/moto-api/"

    def __init__(self, log_dir: Path) -> None:
        port = free_port()
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        super().__init__(command, port=port, log=log_dir / f"moto-{port}.log")

    def enforce_auth(self) -> None:
        """From now on, every request must be signed by a known IAM access key and allowed by its policies."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("POST", "/moto-api/reset-auth", body=b"0")
            assert connection.getresponse().status == 200
        finally:
            connection.close()


class Blackhole:
    """A TCP endpoint that accepts connections and never answers: a storage service that hangs."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.port = int(self.socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.socket.close()


def metric(server: Server, name: str, **labels: str) -> float:
    """A metric from the sidecar's /metrics, added up over its workers and over the label values not named."""
    status, _, body = raw_get(server.url, "/metrics")
    assert status == 200
    total = 0.0
    for match in re.finditer(rf"^{name}(?:\{{(.*?)\}})? (\S+)$", body.decode(), re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[1] or ""))
        if all(found.get(label) == value for label, value in labels.items()):
            total += float(match[2])
    return total


def sidecar_requests(sidecar: SidecarServer) -> float:
    """Derivative requests that reached the sidecar."""
    return metric(sidecar, "resize_sidecar_requests_total", route="derivative")


@dataclass
class Stack:
    mode: StorageKind
    settings: Settings
    storage: Storage
    sidecar: SidecarServer
    nginx: NginxServer

    def url(self, key: str, spec: str, fmt: str) -> str:
        return format_path(key, spec, fmt, SECRET)

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        return raw_get(self.nginx.url, path, method)

    def get_with(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        return raw_get(self.nginx.url, path, method, body=body, headers=headers)

    def sidecar_requests(self) -> float:
        return sidecar_requests(self.sidecar)

    def derivatives_of(self, key: str) -> list[str]:
        return [item.key for item in self.storage.list(f"_r/{key}/")]


def public_derivatives_policy(bucket: str) -> str:
    """Anonymous reads of derivatives only; originals stay private."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/_r/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@contextmanager
def media_stack(
    mode: StorageKind,
    moto_endpoint: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    *,
    public: bool = True,
    snippet: bool = False,
) -> Iterator[Stack]:
    """nginx in front of a sidecar, over a fresh local folder or a fresh bucket at an S3 endpoint (moto's, or any
    other with the suite's credentials) whose derivatives are public, or private if not ``public``; nginx runs the
    whole rendered file, or with ``snippet`` the snippet in a server of its own (:class:`NginxServer`)."""
    env = {"RESIZE_SIDECAR_SECRETS": SECRET, "RESIZE_SIDECAR_STORAGE": mode, **(env or {})}
    if mode == "local":
        env["RESIZE_SIDECAR_LOCAL_ROOT"] = str(world_readable_dir("resize-sidecar-media-"))
    else:
        import boto3

        bucket = f"e2e-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        if public:
            client.put_bucket_policy(Bucket=bucket, Policy=public_derivatives_policy(bucket))
        env.update(RESIZE_SIDECAR_S3_BUCKET=bucket, RESIZE_SIDECAR_S3_ENDPOINT_URL=moto_endpoint)
    settings = Settings(
        storage=mode,
        local_root=env.get("RESIZE_SIDECAR_LOCAL_ROOT", "media"),
        s3_bucket=env.get("RESIZE_SIDECAR_S3_BUCKET", ""),
        s3_endpoint_url=env.get("RESIZE_SIDECAR_S3_ENDPOINT_URL", ""),
        secrets=(SECRET,),
    ).validate()
    with ExitStack() as servers:
        sidecar = servers.enter_context(SidecarServer(env, log_dir))
        nginx = servers.enter_context(NginxServer(env, sidecar_url=sidecar.url, snippet=snippet))
        yield Stack(mode, settings, open_storage(settings), sidecar, nginx)
