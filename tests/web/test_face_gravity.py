"""A fill with the gravity face through the sidecar's miss path: signed like every spec, cropped around the face the
original's record names, stored at exactly the requested key and answered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import faces, imaging
from resize_sidecar.web.app import make_app
from tests.support.in_process import CountingStorage, get, url
from tests.support.keys import stored_key

PORTRAIT = Path(__file__).resolve().parents[1] / "media/portraits/biden-standing.jpg"


def test_a_signed_face_crop_is_made_around_the_face_stored_and_answered(
    make_settings: Callable[..., Settings], storage: CountingStorage
) -> None:
    settings = make_settings()
    sidecar = make_app(settings, storage=storage)
    data = PORTRAIT.read_bytes()
    storage.inner.put("people/b.jpg", data, "image/jpeg", "")
    path = url("people/b.jpg", "200x200-fill-face", "png")
    response = get(sidecar, path)
    answer = (response.status_int, response.content_type, response.headers["X-Derivative"])
    assert answer == (200, "image/png", "created")
    limits = settings.image_limits
    found = faces.detect(data, imaging.probe(data, limits), limits)
    assert len(found) == 1
    record = json.loads(storage.inner.get(faces.faces_key("people/b.jpg")) or b"{}")
    assert record["version"] == storage.inner.version("people/b.jpg")
    assert record["faces"] == [[found[0].left, found[0].top, found[0].width, found[0].height]]
    spec = parse_spec("200x200-fill-face")
    assert response.body == imaging.render(data, spec, "png", limits, faces=found).body
    # The centre of this tall portrait is the man's chest: the face crop is another picture.
    assert response.body != imaging.render(data, parse_spec("200x200-fill"), "png", limits).body
    assert storage.inner.get(stored_key(path)) == response.body
    again = get(sidecar, path)
    assert (again.status_int, again.headers["X-Derivative"], again.body) == (200, "existing", response.body)
