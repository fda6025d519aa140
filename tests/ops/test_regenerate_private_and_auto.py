"""regenerate remakes private derivatives and the objects of .auto URLs, as it remakes every other derivative."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.storage import Storage
from resize_sidecar.ops.regenerate import regenerate
from tests.support.images import photo


def test_a_quality_change_rebuilds_private_and_auto_derivatives_too(
    make_settings: Callable[..., Settings], storage: Storage
) -> None:
    settings = make_settings()
    storage.put("a.jpg", photo(640, 480), "image/jpeg", "no-cache")
    urls, deriver = MediaURLs(settings), Deriver(settings, storage)
    path, query = urls.derivative("a.jpg", width=200, private=True).split("?")
    made = [deriver.derive(path, query=query).storage_key]
    auto = urls.derivative("a.jpg", width=200, format="auto")
    made += [deriver.derive(auto, accept=accept).storage_key for accept in ("image/avif", "image/webp", "*/*")]
    made.append(deriver.derive(urls.derivative("a.jpg", width=200, format="png")).storage_key)
    assert [key.split("/")[0] for key in made] == ["_p", "_r", "_r", "_r", "_r"]

    lower = replace(settings, quality_jpg=50, quality_webp=50, quality_avif=40)
    first, second = regenerate(lower, storage), regenerate(lower, storage)

    rebuilt = {outcome.item: outcome.status for outcome in first.outcomes}
    assert rebuilt == dict.fromkeys(made[:4], "rebuilt") | {made[4]: "current"}
    assert second.counts() == {"current": 5}
