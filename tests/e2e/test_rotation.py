"""Rotating the signing secret on a warm store: no render, nothing orphaned, and the dropped secret's URLs refused.

Through real nginx and gunicorn, over a local folder and over a bucket on moto's S3 server read with SigV4 through
nginx's cache (where a cached copy keyed on the signature would also be lost to a rotation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from tests.support.images import photo
from tests.support.keys import AWKWARD_KEYS
from tests.support.servers import NginxServer, SidecarServer, Stack, media_stack, metric, raw_get

OLD, NEW = "the-secret-that-leaked", "the-secret-after-it"
TRANSFORMS = "resize_sidecar_transforms_total"
CHROMIUM_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


@pytest.fixture(scope="module", params=["local", "s3"])
def rotation_stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A stack signing with OLD, and the environment it runs with (to start others over the same storage)."""
    env = {
        "RESIZE_SIDECAR_SECRETS": OLD,
        "RESIZE_SIDECAR_NGINX_S3_AUTH": "sigv4",
        "RESIZE_SIDECAR_NGINX_CACHE_SIZE": "16m",
    }
    log_dir = tmp_path_factory.mktemp(f"rotation-{request.param}")
    with media_stack(request.param, moto_endpoint, log_dir, env) as stack:
        settings = stack.settings
        env = {**env, "RESIZE_SIDECAR_STORAGE": settings.storage}
        if settings.storage == "local":
            env["RESIZE_SIDECAR_LOCAL_ROOT"] = settings.local_root
        else:
            env.update(RESIZE_SIDECAR_S3_BUCKET=settings.s3_bucket, RESIZE_SIDECAR_S3_ENDPOINT_URL=moto_endpoint)
        yield stack, {**env, "log_dir": str(log_dir)}


def page(secrets: tuple[str, ...], key: str) -> list[tuple[str, dict[str, str]]]:
    """What a page of ``key`` asks for: a srcset in two formats, an .auto URL, a private URL; with their headers."""
    urls = MediaURLs(Settings(secrets=secrets))
    asked = [(urls.derivative(key, width=width, format=fmt), {}) for width in (160, 320) for fmt in ("webp", "jpg")]
    asked.append((urls.derivative(key, width=240, format="auto"), {"Accept": CHROMIUM_ACCEPT}))
    asked.append((urls.derivative(key, width=200, format="png", private=True, expires_in=600), {}))
    return asked


def fetch(nginx: NginxServer, asked: list[tuple[str, dict[str, str]]]) -> list[tuple[int, bytes]]:
    answers = [raw_get(nginx.url, url, headers=headers) for url, headers in asked]
    return [(status, body) for status, _, body in answers]


def signature_of(url: str) -> str:
    return urlsplit(url).path.rsplit("-", 1)[1].split(".")[0]


def stored(stack: Stack) -> list[str]:
    return sorted(item.key for prefix in ("_r/", "_p/") for item in stack.storage.list(prefix))


def test_rotating_the_secret_on_a_warm_store_renders_nothing_and_the_dropped_secret_is_refused(
    rotation_stack: tuple[Stack, dict[str, str]],
) -> None:
    stack, env = rotation_stack
    log_dir = Path(env.pop("log_dir"))
    keys = [param.values[0] for param in AWKWARD_KEYS]
    for key in keys:
        stack.storage.put(key, photo(800, 600), "image/jpeg", "no-cache")
    before = [answer for key in keys for answer in fetch(stack.nginx, page((OLD,), key))]
    assert [status for status, _ in before] == [200] * len(before)
    warm = stored(stack)
    assert metric(stack.sidecar, TRANSFORMS) == len(warm) == 6 * len(keys)

    # The new secret signs, the old one still verifies: pages carry new URLs, and storage answers them all.
    rotated = {**env, "RESIZE_SIDECAR_SECRETS": f"{NEW},{OLD}"}
    with SidecarServer(rotated, log_dir) as sidecar, NginxServer(rotated, sidecar_url=sidecar.url) as nginx:
        for key in keys:
            assert page((NEW, OLD), key) != page((OLD,), key)
        after = [answer for key in keys for answer in fetch(nginx, page((NEW, OLD), key))]
        assert after == before
        assert metric(sidecar, TRANSFORMS) == 0
        assert metric(sidecar, "resize_sidecar_requests_total", route="derivative") == 0  # nginx served every one
        assert [answer for key in keys for answer in fetch(nginx, page((OLD,), key))] == before
    assert stored(stack) == warm

    # The old secret dropped: its URLs are refused by the sidecar (nginx does not serve them), the objects stay.
    dropped = {**env, "RESIZE_SIDECAR_SECRETS": NEW}
    with SidecarServer(dropped, log_dir) as sidecar, NginxServer(dropped, sidecar_url=sidecar.url) as nginx:
        assert [answer for key in keys for answer in fetch(nginx, page((NEW,), key))] == before
        refused = fetch(nginx, page((OLD,), keys[0]))
        assert [status for status, _ in refused] == [403] * len(refused)
        assert {body for _, body in refused[:-1]} == {b"Forbidden: signature does not match\n"}
        assert refused[-1][1] == b"Forbidden: the private URL's token does not match\n"
        assert metric(sidecar, TRANSFORMS) == 0
    assert stored(stack) == warm


def test_nginx_serves_a_stored_derivative_only_to_a_url_that_verifies(
    rotation_stack: tuple[Stack, dict[str, str]],
) -> None:
    stack, _ = rotation_stack
    key = "verified/cat é.jpg"
    stack.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    urls = MediaURLs(Settings(secrets=(OLD,)))
    url = urls.derivative(key, width=200, format="webp")
    status, _, body = stack.get(url)
    assert status == 200
    signature = signature_of(url)
    unknown = MediaURLs(Settings(secrets=(NEW,))).derivative(key, width=200, format="webp")
    auto = urls.derivative(key, width=200, format="auto")
    # Each names the stored object's key, spec and format, and is refused.
    refused = {
        "unknown secret": url.replace(signature, signature_of(unknown)),
        "another key's signature": url.replace(signature, signature_of(urls.derivative("verified/dog.jpg", width=200))),
        "signed as another format": url.replace(".webp", ".jpg"),
        "key encoded otherwise": url.replace("verified/cat", "verified/c%61t"),
        "key in lower-case hex": url.replace("%C3%A9", "%c3%a9"),
        "an .auto URL's signature": url.replace(signature, signature_of(auto)),
    }
    stack.sidecar.stop()
    try:
        assert stack.get(url)[::2] == (200, body)
        for why, each in refused.items():
            assert stack.get(each)[0] == 502, why  # nginx passed it on to the sidecar, which is not there
    finally:
        stack.sidecar.start()
    answers = {why: stack.get(each) for why, each in refused.items()}
    assert {why: (status, body) for why, (status, _, body) in answers.items()} == {
        "unknown secret": (403, b"Forbidden: signature does not match\n"),
        "another key's signature": (403, b"Forbidden: signature does not match\n"),
        "signed as another format": (403, b"Forbidden: signature does not match\n"),
        "key encoded otherwise": (400, b"Bad Request: key is not percent-encoded canonically\n"),
        "key in lower-case hex": (400, b"Bad Request: key is not percent-encoded canonically\n"),
        "an .auto URL's signature": (403, b"Forbidden: signature does not match\n"),
    }
    assert stored(stack).count(f"_r/{key}/200x.webp") == 1
