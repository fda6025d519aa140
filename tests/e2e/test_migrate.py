"""An old store upgraded with ``resize-sidecar migrate``, through real nginx and gunicorn over moto's S3 server (read
with SigV4, so that private derivatives are served too).

The store is written as the version before wrote it: each derivative at its signed key (a Deriver in redirect mode,
whose keys still carry the signature). nginx now reads the unsigned key, so before the move every URL is a render;
after it, nginx alone serves the very bytes stored before, with the sidecar stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media.derive import Deriver
from tests.support.commands import Run, s3_env
from tests.support.images import photo
from tests.support.servers import Stack, media_stack, metric, raw_get

pytestmark = pytest.mark.e2e

TRANSFORMS = "resize_sidecar_transforms_total"


@pytest.fixture
def stack(moto_endpoint: str, tmp_path: Path) -> Iterator[Stack]:
    env = {"RESIZE_SIDECAR_NGINX_S3_AUTH": "sigv4", "RESIZE_SIDECAR_PRESETS": "thumb=100x100-fill"}
    with media_stack("s3", moto_endpoint, tmp_path, env) as started:
        yield started


def test_after_migrate_nginx_serves_what_the_old_version_stored_with_the_sidecar_stopped(
    stack: Stack, cli: Run, moto_endpoint: str
) -> None:
    storage, urls = stack.storage, MediaURLs(stack.settings)
    storage.put("a.jpg", photo(640, 480), "image/jpeg", "no-cache")
    old_version = Deriver(replace(stack.settings, on_miss="redirect", public_base_url="https://m.example.com"), storage)
    requested_before = urls.derivative("a.jpg", width=300)
    auto = urls.derivative("a.jpg", width=150, format="auto")
    served_after = [
        (urls.derivative("a.jpg", width=200, format="webp"), ""),
        (auto, "image/webp"),
        (auto, "image/jpeg"),
        (urls.derivative("a.jpg", width=100, format="png", private=True), ""),
    ]
    old = {}
    for url, accept in [(requested_before, ""), *served_after]:
        path, _, query = url.partition("?")
        old[url, accept] = old_version.derive(path, query=query, accept=accept).body

    renders = metric(stack.sidecar, TRANSFORMS)
    status, headers, _ = stack.get(requested_before)
    assert (status, headers["x-derivative"]) == (200, "created")
    assert metric(stack.sidecar, TRANSFORMS) == renders + 1

    env = s3_env(moto_endpoint, stack.settings.s3_bucket, RESIZE_SIDECAR_PRESETS="thumb=100x100-fill")
    listing = [(item.key, item.size, item.last_modified) for item in storage.list("")]
    dry = cli("migrate", "--dry-run", env=env)
    assert (dry.code, dry.lines()[-1]) == (0, "migrate: 5 would move")
    assert [(item.key, item.size, item.last_modified) for item in storage.list("")] == listing

    moved = cli("migrate", env=env)
    assert (moved.code, moved.lines()[-1]) == (0, "migrate: 5 moved"), moved.err
    derivatives = [item.key for item in storage.list("_r/")] + [item.key for item in storage.list("_p/")]
    assert derivatives == [
        "_r/a.jpg/150x.jpg", "_r/a.jpg/150x.webp", "_r/a.jpg/200x.webp", "_r/a.jpg/300x.jpg", "_p/a.jpg/100x.png"
    ]  # fmt: skip

    stack.sidecar.stop()
    assert stack.get(urls.derivative("a.jpg", width=50))[0] == 502  # a miss now reaches no sidecar
    for (url, accept), body in old.items():
        if url == requested_before:
            continue
        status, headers, served = raw_get(stack.nginx.url, url, headers={"Accept": accept} if accept else {})
        assert (status, served) == (200, body), (url, accept)
    assert stack.get(requested_before)[0] == 200

    listing = [(item.key, item.size, item.last_modified) for item in storage.list("")]
    again = cli("migrate", env=env)
    assert (again.code, again.out) == (0, "migrate: nothing to do\n")
    assert [(item.key, item.size, item.last_modified) for item in storage.list("")] == listing
