"""A crop, a focal point, rotate and flip through the sidecar's miss path: signed like every spec, made, stored at
exactly the requested key and answered; another spelling of the same turn is refused before storage is touched."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pyvips

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import sign
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.in_process import CountingStorage, get, url
from tests.support.keys import stored_key
from tests.support.servers import SECRET


@pytest.fixture
def sidecar(make_settings: Callable[..., Settings], storage: CountingStorage) -> SidecarApp:
    return make_app(make_settings(), storage=storage)  # type: ignore[arg-type]


def test_a_signed_crop_and_turn_is_made_stored_and_answered(sidecar: SidecarApp, storage: CountingStorage) -> None:
    # 800x600: red left half with a blue block in its top-left corner, green right half.
    picture = (pyvips.Image.black(800, 600, bands=3) + [20, 200, 20]).cast("uchar")
    picture = picture.insert((pyvips.Image.black(400, 600, bands=3) + [230, 20, 20]).cast("uchar"), 0, 0)
    picture = picture.insert((pyvips.Image.black(100, 100, bands=3) + [20, 20, 230]).cast("uchar"), 0, 0)
    storage.inner.put("albums/p.png", bytes(picture.copy(interpretation="srgb").pngsave_buffer()), "image/png", "")
    path = url("albums/p.png", "200x-crop0.0.500.1000-r90", "png")
    response = get(sidecar, path)
    answer = (response.status_int, response.content_type, response.headers["X-Derivative"])
    assert answer == (200, "image/png", "created")
    made = pyvips.Image.new_from_buffer(response.body, "")
    # The left half (400x600) turned a quarter clockwise is 600x400; 200 wide, 200x133. The blue corner is top right.
    assert (made.width, made.height) == (200, 133)
    assert [round(value) for value in made(190, 5)] == [20, 20, 230]
    assert [round(value) for value in made(10, 120)] == [230, 20, 20]
    assert storage.inner.get(stored_key(path)) == response.body
    again = get(sidecar, path)
    assert (again.status_int, again.headers["X-Derivative"], again.body) == (200, "existing", response.body)


def test_a_turn_signed_in_another_spelling_is_400_naming_its_one_spelling_with_nothing_read(
    sidecar: SidecarApp, storage: CountingStorage
) -> None:
    signature = sign("albums/p.png", "200x-r180-flipx", "png", SECRET)
    response = get(sidecar, f"/media/_r/albums/p.png/200x-r180-flipx-{signature}.png")
    assert response.status_int == 400
    assert response.text == "Bad Request: r180-flipx is the same turn as flipy: write that\n"
    assert storage.calls == []
