"""The transform deadline's watchdog: it stops a render whichever deadlines came before, and holds none alive."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import pytest
import pyvips

from resize_sidecar.core.errors import TransformTimeoutError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import imaging

MakeSettings = Callable[..., Settings]


def a_slow_original() -> bytes:
    """A 6000x4000 noise JPEG: into 1500 px sharpened, far longer to render than a 50 ms deadline."""
    bands = [pyvips.Image.gaussnoise(600, 400, sigma=40, mean=128) for _ in range(3)]
    tile = bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")
    return bytes(tile.replicate(10, 10).jpegsave_buffer(Q=85))


def test_a_short_deadline_stops_its_render_while_a_longer_one_runs(make_settings: MakeSettings) -> None:
    # The watchdog sleeps until the first deadline due: one added later but due sooner must wake it.
    longer = imaging.Deadline(600)
    longer.watch(pyvips.Image.black(8, 8))
    data = a_slow_original()
    with pytest.raises(TransformTimeoutError) as raised:
        imaging.render(data, parse_spec("1500x-sharp"), "png", make_settings(transform_timeout=0.05).image_limits)
    assert isinstance(raised.value.__context__, pyvips.Error)  # stopped inside libvips, not between steps
    assert not longer.expired


def test_a_finished_transform_frees_its_deadline_and_images() -> None:
    deadline = imaging.Deadline(600)
    image = deadline.watch(pyvips.Image.black(8, 8))
    freed = weakref.ref(deadline)
    del deadline, image
    gc.collect()
    assert freed() is None


def test_a_deadline_that_passed_stops_an_image_watched_after_it() -> None:
    deadline = imaging.Deadline(0)
    with pytest.raises(TransformTimeoutError):
        deadline.check()
    with pytest.raises(pyvips.Error, match="killed"):
        deadline.watch(pyvips.Image.black(64, 64)).avg()
