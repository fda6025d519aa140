"""End to end: a fill with the gravity face, through real nginx and gunicorn, over local storage and moto's S3.

A signed ``fill-face`` miss is made around the face, stored at its key and then served by nginx; the faces found
in the original are kept in storage where nginx never serves them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import faces, imaging
from tests.support.servers import Stack, media_stack

pytestmark = pytest.mark.e2e

PORTRAIT = Path(__file__).resolve().parents[1] / "media/portraits/biden-standing.jpg"


@pytest.fixture(scope="module", params=["local", "s3"])
def stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp(f"logs-{request.param}")
    with media_stack(request.param, moto_endpoint, logs) as started:
        yield started


def test_a_face_crop_is_made_around_the_face_and_then_served_by_nginx(stack: Stack) -> None:
    data = PORTRAIT.read_bytes()
    stack.storage.put("people/b.jpg", data, "image/jpeg", "no-cache")
    url = stack.url("people/b.jpg", "200x200-fill-face", "png")
    status, headers, body = stack.get(url)
    assert (status, headers["content-type"]) == (200, "image/png")
    limits = stack.settings.image_limits
    found = faces.detect(data, imaging.probe(data, limits), limits)
    assert body == imaging.render(data, parse_spec("200x200-fill-face"), "png", limits, faces=found).body
    record = json.loads(stack.storage.get(faces.faces_key("people/b.jpg")) or b"{}")
    assert record["version"] == stack.storage.version("people/b.jpg")
    assert len(record["faces"]) == 1

    reached = stack.sidecar_requests()
    assert stack.get(url)[::2] == (200, body)
    assert stack.sidecar_requests() == reached, "a hit reached the sidecar"
    never_served = stack.get(f"{stack.settings.media_url}{faces.faces_key('people/b.jpg')}")
    assert never_served[0] == 404
