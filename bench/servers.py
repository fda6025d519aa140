"""The servers a benchmark run starts, each on a free loopback port, each stopped with its whole process group.

Every server is a context manager; :func:`bench.run.main` enters them all in one ``ExitStack``, so they stop on
success, on an error and on Ctrl-C (or SIGTERM, which the entry point turns into an exception). Starting, waiting
for and stopping a process is ``tests/support/servers.py``'s; this module adds the CPU accounting and the benchmark's
servers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
#: The product's own nginx templates: the static and thumbor configurations reuse its http-level settings.
TEMPLATES = REPO / "deploy" / "nginx"

# ``python bench/run.py`` puts only bench/ on the path; the shared helpers live in the repository's tests package.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from resize_sidecar.ops.nginx import OPEN_FILE_CACHE  # noqa: E402
from tests.support import servers as test_servers  # noqa: E402
from tests.support.servers import free_port as free_port  # noqa: E402  (the harness's, too)
from tests.support.servers import nginx_binary  # noqa: E402
from tests.support.servers import world_readable_dir as world_readable_dir  # noqa: E402  (the harness's, too)


class Server(test_servers.Server):
    """A benchmark server: a minute to answer (a run starts all its servers at once, on 2 cores), and its CPU use."""

    ready_timeout = 60.0

    def workers(self) -> list[int]:
        """The server's child processes (gunicorn's workers), from /proc."""
        if self.process is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                # The parent pid is the second field after the parenthesised command name.
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.append(int(entry))
        return found

    def cpu_ticks(self) -> int:
        """CPU time (clock ticks) used so far by the server's process and its children."""
        if self.process is None:
            return 0
        total = 0
        for pid in [self.process.pid, *self.workers()]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total


def wait_idle(running: list[Server], *, quiet: float = 0.2, limit: float = 5.0) -> float:
    """Wait until none of ``running`` uses CPU for ``quiet`` seconds (at most ``limit``); the seconds waited.

    A load run ends with requests still queued in nginx and gunicorn; they must not run into the next measurement.
    """
    started = time.monotonic()
    before = sum(server.cpu_ticks() for server in running)
    while time.monotonic() - started < limit:
        time.sleep(quiet)
        after = sum(server.cpu_ticks() for server in running)
        if after == before:
            break
        before = after
    return time.monotonic() - started


def sidecar(
    env: dict[str, str], logs: Path, *, workers: int, threads: int | None = None, name: str = "sidecar"
) -> Server:
    """The sidecar as users run it: ``resize-sidecar serve`` (gunicorn with the package's configuration).

    ``threads`` overrides serve's default; 1 with ``GUNICORN_CMD_ARGS=--worker-class sync`` in ``env`` makes sync
    workers (gunicorn turns a sync worker with more threads into a threaded one).
    """
    port = free_port()
    command = [sys.executable, "-m", "resize_sidecar.ops.cli", "serve", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers)] + ([] if threads is None else ["--threads", str(threads)])
    server = Server(command, port=port, log=logs / f"{name}.log", env=env, name=name)
    server.ready_path = "/healthz"
    return server


def patched_sidecar(app: str, env: dict[str, str], logs: Path, *, workers: int, name: str) -> Server:
    """The sidecar's app with benchmark patches (``app`` in bench/), under the package's gunicorn configuration."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:resize_sidecar.ops.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--pythonpath",
        str(BENCH),
        app,
    ]
    server = Server(command, port=port, log=logs / f"{name}.log", env=env, name=name)
    server.ready_path = "/healthz"
    return server


def floor(root: Path, logs: Path, *, workers: int) -> Server:
    """The floor app (``floor_app.py``) under gunicorn: sync workers (as fast as any model for local, CPU-bound
    renders, and the simplest), the sidecar's libvips settings."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "sync",
        "--pythonpath",
        str(BENCH),
        "floor_app:app",
    ]
    env = {"BENCH_FLOOR_ROOT": str(root), "VIPS_CONCURRENCY": "1", "MALLOC_ARENA_MAX": "2"}
    server = Server(command, port=port, log=logs / "floor.log", env=env, name="floor")
    server.ready_path = "/healthz"
    return server


def moto(logs: Path) -> Server:
    """moto's S3 server (threaded werkzeug) as its own process, so it does not share the harness's GIL."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return Server(command, port=port, log=logs / "moto.log", name="moto")


def delay_proxy(target_port: int, delay_ms: float, logs: Path) -> Server:
    """A TCP proxy in front of ``target_port`` that adds ``delay_ms`` to every request (``delay_proxy.py``)."""
    port = free_port()
    command = [sys.executable, str(BENCH / "delay_proxy.py"), str(port), str(target_port), str(delay_ms)]
    return Server(command, port=port, log=logs / f"delay-{delay_ms:g}ms.log", name=f"delay-{delay_ms:g}ms")


def thumbor(venv: Path, config: Path, logs: Path, index: int) -> Server:
    """One single-process thumbor instance."""
    port = free_port()
    command = [str(venv / "bin" / "thumbor"), "-p", str(port), "-i", "127.0.0.1", "-c", str(config), "-l", "warning"]
    server = Server(command, port=port, log=logs / f"thumbor-{index}.log", name=f"thumbor-{index}")
    server.ready_path = "/healthcheck"
    return server


class Nginx(Server):
    """Debian's nginx with a given configuration, in its own prefix folder (pid file, logs, temp files)."""

    ready_path = "/bench-not-a-route"

    def __init__(self, name: str, config: str, port: int, logs: Path) -> None:
        self.config_text = config
        self.prefix = world_readable_dir(f"bench-nginx-{name}-")
        (self.prefix / "nginx.conf").write_text(config)
        binary = nginx_binary(in_test=False)
        command = [binary, "-p", f"{self.prefix}/", "-c", str(self.prefix / "nginx.conf"), "-e", "stderr"]
        super().__init__([*command, "-g", "daemon off;"], port=port, log=logs / f"nginx-{name}.log", name=name)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def reload(self, config: str) -> None:
        """Take ``config`` as ``nginx -s reload`` does (SIGHUP to the master): new workers read it, while the port,
        the prefix folder and the cache in it stay. Returns at once; the old workers finish what they serve."""
        assert self.process is not None, "launch() first"
        (self.prefix / "nginx.conf").write_text(config)
        self.config_text = config
        self.process.send_signal(signal.SIGHUP)

    @staticmethod
    def render_for_sidecar(env: dict[str, str], sidecar_url: str, port: int) -> str:
        """The product's configuration, rendered by ``resize-sidecar nginx`` from the sidecar's settings."""
        render = [sys.executable, "-m", "resize_sidecar.ops.cli", "nginx", "--listen", f"127.0.0.1:{port}"]
        return subprocess.run(
            [*render, "--sidecar", sidecar_url],
            env={**os.environ, **env},
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    @classmethod
    def for_sidecar(cls, name: str, env: dict[str, str], sidecar_url: str, logs: Path) -> Nginx:
        """nginx with the product's configuration for the sidecar at ``sidecar_url``."""
        port = free_port()
        return cls(name, cls.render_for_sidecar(env, sidecar_url, port), port, logs)

    @classmethod
    def static(cls, name: str, root: Path, logs: Path) -> Nginx:
        """Plain static files from ``root``, with the product configuration's http-level settings and the open-file
        cache of its derivative location."""
        port = free_port()
        cache = "".join(f"\n    {line}" for line in OPEN_FILE_CACHE)
        location = f'location / {{\n    root "{root}";{cache}\n}}'
        config = _render_template(
            "nginx.conf", {"listen": f"127.0.0.1:{port}", "sidecar_address": "127.0.0.1:9", "locations": location}
        )
        return cls(name, config, port, logs)

    @classmethod
    def balancer(cls, name: str, backends: list[int], logs: Path) -> Nginx:
        """A least-connections upstream over single-process backends, so no backend idles while another queues."""
        port = free_port()
        servers = "\n".join(f"        server 127.0.0.1:{backend};" for backend in backends)
        config = f"""worker_processes auto;
pid nginx.pid;
error_log error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log access.log;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    upstream backends {{
        least_conn;
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 60s;
        }}
    }}
}}
"""
        return cls(name, config, port, logs)


def _render_template(name: str, values: dict[str, str]) -> str:
    """The product's template with ``values``; its other placeholders (S3 signing, caches) are left out."""
    text = (TEMPLATES / f"{name}.template").read_text(encoding="utf-8")
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values.get(match[1], ""), text)


def ipx(folder: Path, root: Path, logs: Path, index: int) -> Server:
    """One ipx (sharp) process over ``root`` (``bench/ipx/server.mjs``, installed in ``folder``); one libvips
    thread, as in the sidecar's workers."""
    port = free_port()
    command = ["node", str(folder / "server.mjs"), str(root), str(port)]
    env = {"VIPS_CONCURRENCY": "1"}
    return Server(command, port=port, log=logs / f"ipx-{index}.log", env=env, name=f"ipx-{index}")
