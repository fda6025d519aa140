"""Ceph's RADOS Gateway on loopback: a real S3 implementation beside moto's emulator.

A throwaway single-node cluster in a folder of its own: one monitor, one OSD on the memstore objectstore (its data
in memory, 2 GiB at most), pools of one copy, no authentication between the daemons (cephx off), no ceph-mgr, and
radosgw's beast frontend on a free loopback port. It starts in about 12 seconds and leaves nothing behind. Its one
S3 user has the suite's credentials (``testing``/``testing``, see conftest), so clients need no other settings.
Static websites stay off, as on a default radosgw.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.servers import Server, free_port

#: The Debian packages, and the programs of theirs that are run here.
PACKAGES = ("ceph-mon", "ceph-osd", "radosgw")
PROGRAMS = ("monmaptool", "ceph-mon", "ceph", "ceph-osd", "radosgw", "radosgw-admin")
ACCESS_KEY = SECRET_KEY = "testing"
#: Seconds for one administrative command; the daemons answer them in well under one.
_COMMAND_TIMEOUT = 60


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if shutil.which(program) is None]


class RadosGateway:
    """The cluster and its gateway; ``url`` is the S3 endpoint once started."""

    def __init__(self) -> None:
        # Short: a daemon's admin socket path must fit in 107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="resize-sidecar-rgw-"))
        self.conf = self.root / "ceph.conf"
        self.mon_port = free_port()
        self.gateway = Server(
            ["radosgw", "--conf", str(self.conf), "--name", "client.rgw", "-d"],
            port=free_port(),
            log=self.root / "log" / "radosgw.log",
            name="radosgw",
        )
        # radosgw creates its pools before it answers: the first start takes some seconds.
        self.gateway.ready_timeout = 120.0
        self._daemons = ExitStack()

    @property
    def url(self) -> str:
        return self.gateway.url

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for folder in ("mon", "osd/0", "run", "log"):
            (self.root / folder).mkdir(parents=True)
        fsid = str(uuid.uuid4())
        self.conf.write_text(self._config(fsid))
        monmap = str(self.root / "monmap")
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v1:127.0.0.1:{self.mon_port}]", monmap)
        self._run("ceph-mon", "--conf", str(self.conf), "--mkfs", "--id", "a", "--monmap", monmap)
        self._daemon("ceph-mon", "--id", "a")
        # The OSD's own uuid, given to both: an OSD that makes up another one at --mkfs is refused at boot.
        osd_uuid = str(uuid.uuid4())
        # A monitor that has just started refuses commands (EPERM) until it has formed its quorum of one.
        self._retry(lambda: self._run("ceph", *self._client, "osd", "new", osd_uuid, "0"))
        self._run("ceph", *self._client, "osd", "crush", "add", "osd.0", "1.0", "root=default")
        self._run("ceph-osd", "--conf", str(self.conf), "--id", "0", "--osd-uuid", osd_uuid, "--mkfs")
        self._daemon("ceph-osd", "--id", "0")
        # radosgw waits without end for pools on an OSD that never comes up: see it fail here instead.
        self._retry(self._osd_is_up)
        self._daemons.callback(self.gateway.stop)
        self.gateway.start()
        self._run(
            "radosgw-admin", "--conf", str(self.conf), "user", "create", "--uid", "testing", "--display-name",
            "resize-sidecar tests", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        )  # fmt: skip

    def stop(self) -> None:
        self._daemons.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _config(self, fsid: str) -> str:
        root = self.root
        return f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{self.mon_port}
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
osd objectstore = memstore
memstore device bytes = 2147483648
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
# The OSD is placed in the CRUSH map before it starts: at boot it would ask the monitor itself, and a refusal of that
# request (seen now and then on a busy machine) stops it.
osd crush update on start = false
osd class update on start = false
mon allow pool size one = true
mon warn on pool no redundancy = false
# A full disk elsewhere on the machine must not stop the monitor: its data is a few megabytes.
mon data avail crit = 0
mon data avail warn = 0
mon data = {root}/mon/$name
osd data = {root}/osd/$id
run dir = {root}/run
admin socket = {root}/run/$name.asok
pid file = {root}/run/$name.pid
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.gateway.port}
rgw data = {root}/rgw
"""

    @property
    def _client(self) -> tuple[str, ...]:
        return ("--conf", str(self.conf), "--connect-timeout", "10")

    def _run(self, *command: str) -> str:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def _osd_is_up(self) -> None:
        status = json.loads(self._run("ceph", *self._client, "osd", "stat", "--format", "json"))
        if status.get("num_up_osds") != 1:
            log = (self.root / "log" / "ceph-osd.log").read_text(errors="replace")
            raise RuntimeError(f"the OSD is not up: {status}\n" + "\n".join(log.splitlines()[-20:]))

    @staticmethod
    def _retry(step: Callable[[], object], seconds: float = _COMMAND_TIMEOUT) -> None:
        """Run ``step`` until it raises no RuntimeError; after ``seconds``, let its last error through."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                step()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def _daemon(self, program: str, *options: str) -> None:
        """Start a daemon in the foreground (``-d``: its log on stderr, into the log file of its Server)."""
        daemon = Server(
            [program, "--conf", str(self.conf), *options, "-d"],
            port=0,
            log=self.root / "log" / f"{program}.log",
        )
        daemon.launch()
        self._daemons.callback(daemon.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
