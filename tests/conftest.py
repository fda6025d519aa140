"""Shared fixtures: the shared test images, moto's S3 server over HTTP and Ceph's RADOS Gateway (each S3 store in
turn for the tests that take ``s3_endpoint``), a fresh bucket per test, storage, settings, the operator's commands
in-process.

Importing this file changes nothing; the run's environment is set once, when pytest starts (``pytest_configure``).
Nothing imports it: what tests share besides fixtures is in ``tests/support``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.storage import Storage
from tests.support.commands import Result, Run
from tests.support.environment import isolate
from tests.support.images import TESTDATA
from tests.support.servers import SECRET
from tests.support.stores import S3Endpoint


def pytest_configure(config: pytest.Config) -> None:
    isolate()


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared corpus of real images (see its MANIFEST.tsv)."""
    if not (TESTDATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared test images not found at {TESTDATA} (set TESTDATA_IMAGES)")
    return TESTDATA


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server, reached over HTTP on a free loopback port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


#: The S3 implementations of the store-parametrised tests: moto's emulator, and Ceph's RADOS Gateway
#: (tests/support/rgw.py), which ``-m "not rgw"`` leaves out.
S3_STORES = ["moto", pytest.param("rgw", marks=pytest.mark.rgw)]


@pytest.fixture(scope="session")
def rgw_endpoint() -> Iterator[str]:
    """Ceph's RADOS Gateway on a free loopback port, started once per run (about 12 s) where Ceph is installed."""
    from tests.support.rgw import PACKAGES, RadosGateway, missing_programs

    missing = missing_programs()
    if missing:
        message = (
            f"Ceph's RADOS Gateway is not installed ({', '.join(missing)} missing: apt-get install "
            f"{' '.join(PACKAGES)}); `make test` installs it when run as root, -m 'not rgw' leaves these cases out"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with RadosGateway() as gateway:
        yield gateway.url


@pytest.fixture(scope="session", params=S3_STORES)
def s3_endpoint(request: pytest.FixtureRequest) -> S3Endpoint:
    """Each S3 implementation in turn: a test that takes it runs once per store."""
    return S3Endpoint(request.param, request.getfixturevalue(f"{request.param}_endpoint"))


@pytest.fixture
def s3_client(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A new, empty bucket for this test (moto's state is process-wide, so names never repeat)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def storage_kind() -> str:
    """The kind of ``storage``: local. A module whose tests hold for S3 too overrides this fixture with the kinds as
    its params: "local", "s3", "s3-with-prefix"."""
    return "local"


@pytest.fixture
def storage(storage_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    """Real storage of ``storage_kind``: a folder under tmp_path, or a fresh bucket on moto's S3 server over HTTP
    (with "s3-with-prefix", everything in it under ``media/``)."""
    if storage_kind == "local":
        (tmp_path / "media").mkdir(exist_ok=True)
        return LocalStorage(tmp_path / "media")
    from resize_sidecar.media.s3 import S3Storage

    bucket, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("moto_endpoint")
    return S3Storage(bucket, endpoint_url=endpoint, prefix="media/" if storage_kind == "s3-with-prefix" else "")


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build validated settings for local storage under tmp_path; keyword arguments override."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "local_root": str(tmp_path / "media"),
            "secrets": (SECRET,),
            "lock_dir": str(tmp_path / "locks"),
        }
        values.update(overrides)
        return Settings(**values).validate()

    return make


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """``resize-sidecar ARGS…`` in this process, with ``env`` as its environment's settings."""
    from resize_sidecar.ops.cli import main  # only where a test runs a command: the CLI imports the whole program

    def run(*args: str, env: dict[str, str]) -> Result:
        with monkeypatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            capsys.readouterr()
            code = main(list(args))
            out, err = capsys.readouterr()
        return Result(code, out, err)

    return run
