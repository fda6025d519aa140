"""Shared fixtures: the shared test images, moto's S3 server over HTTP and Ceph's RADOS Gateway (each S3 store in
turn for the tests that take ``s3_endpoint``), a fresh bucket per test, settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from resize_sidecar.core.settings import Settings
from tests.support.servers import SECRET as SECRET  # the tests import it from here too

# boto3 reads credentials from the environment; moto accepts any. Set before any client is made.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
for _variable in [name for name in os.environ if name.startswith("RESIZE_SIDECAR_")]:
    del os.environ[_variable]

TESTDATA = Path(os.environ.get("TESTDATA_IMAGES", Path(__file__).resolve().parents[2] / "shared/testdata/images"))


def photo(width: int, height: int, fmt: str = "jpg") -> bytes:
    """A photo-like test image: smooth gradients with detail, so encoders and crops have something to show."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    red = xy[0] * (255 / max(width - 1, 1))
    green = xy[1] * (255 / max(height - 1, 1))
    blue = ((xy[0] + xy[1]) % 64) * 4
    image = red.bandjoin([green, blue]).cast("uchar")
    return bytes(image.write_to_buffer(f".{fmt}"))


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


class S3Endpoint(NamedTuple):
    store: str  #: "moto" or "rgw"
    url: str


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
