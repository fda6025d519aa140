"""Private derivatives' URLs: tokens, their refusals, expiries and the Cache-Control they allow."""

from __future__ import annotations

import time

import pytest

from resize_sidecar.core import private
from resize_sidecar.core.errors import BadSignatureError, MalformedPathError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path, parse_path, sign, verify
from resize_sidecar.core.urls import MediaURLs

SECRET = "core-secret-0123456789abcdef"
PATH = "/media/_p/a%20b.jpg/200x-0123456789abcdef0123456789abcdef.jpg"
NOW = 1_800_000_000


def test_a_token_signs_the_expiry_and_the_path_as_requested() -> None:
    key = private.token_key(SECRET)
    token = private.token(PATH, NOW + 60, key)

    assert len(token) == 32
    assert token != private.token(PATH, NOW + 61, key)
    assert token != private.token(PATH.replace("%20", "+"), NOW + 60, key)
    assert private.check(PATH, f"expires={NOW + 60}&token={token}", [SECRET], NOW) == NOW + 60


def test_neither_derived_key_is_the_secret_or_the_other() -> None:
    keys = {SECRET, private.token_key(SECRET), private.signing_key(SECRET)}

    assert len(keys) == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param(private.query(PATH, NOW, SECRET), "the private URL has expired", id="expired this second"),
        pytest.param(private.query(PATH, NOW - 1, SECRET), "the private URL has expired", id="expired"),
        pytest.param(
            private.query(PATH, NOW + 60, SECRET).replace(f"{NOW + 60}", f"{NOW + 6000}"),
            "the private URL's token does not match",
            id="expiry changed by hand",
        ),
        pytest.param(private.query(PATH, NOW + 60, "another-secret-0123456789"), "token does not match", id="secret"),
        pytest.param("", "needs ?expires", id="no query"),
        pytest.param(f"token=abc&expires={NOW + 60}", "needs ?expires", id="reordered"),
        pytest.param(private.query(PATH, NOW + 60, SECRET) + "&x=1", "needs ?expires", id="extra parameter"),
        pytest.param(private.query(PATH, NOW + 60, SECRET).upper(), "needs ?expires", id="upper case"),
        pytest.param(f"expires=0{NOW + 60}&token=" + "0" * 32, "needs ?expires", id="leading zero"),
    ],
)
def test_a_private_query_is_refused_naming_why(query: str, message: str) -> None:
    with pytest.raises(BadSignatureError, match=message.replace("?", r"\?")):
        private.check(PATH, query, [SECRET], NOW)


def test_any_of_the_secrets_verifies_a_token() -> None:
    query = private.query(PATH, NOW + 60, "old-secret-0123456789abcdef")

    assert private.check(PATH, query, [SECRET, "old-secret-0123456789abcdef"], NOW) == NOW + 60


@pytest.mark.parametrize("lifetime", [1, 9, 60, 3600, 3601, 604800])
@pytest.mark.parametrize("now", [NOW, NOW + 1.5, NOW + 7])
def test_an_expiry_is_the_lifetime_rounded_up_by_less_than_a_tenth(now: float, lifetime: int) -> None:
    step = max(1, lifetime // 10)

    expires = private.expiry(now, lifetime)

    assert int(now) + lifetime <= expires < int(now) + lifetime + step
    assert expires % step == 0


@pytest.mark.parametrize("lifetime", [0, -1, 604801])
def test_a_lifetime_over_a_week_or_not_positive_is_refused(lifetime: int) -> None:
    with pytest.raises(MalformedPathError, match="1 to 604800 seconds"):
        private.expiry(NOW, lifetime)


def test_cache_control_lets_a_browser_keep_a_private_derivative_until_its_url_expires() -> None:
    assert private.cache_control(NOW + 90, NOW + 0.9) == "private, max-age=90"
    assert private.cache_control(NOW - 5, NOW) == "private, max-age=0"


def test_media_urls_sign_a_private_name_that_no_public_path_verifies() -> None:
    urls = MediaURLs(Settings(secrets=(SECRET,)))
    url = urls.derivative("a b.jpg", width=200, private=True, expires_in=60)
    path, query = url.split("?")
    parsed = parse_path(path, derived_prefix="_p/")

    private.check(path, query, [SECRET], time.time())
    verify(parsed, [private.signing_key(SECRET)])
    assert parsed.signature != sign("a b.jpg", "200x", "jpg", SECRET)
    assert path.replace("/_p/", "/_r/") != format_path("a b.jpg", "200x", "jpg", SECRET)


def test_media_urls_refuse_a_private_auto_url() -> None:
    urls = MediaURLs(Settings(secrets=(SECRET,)))

    with pytest.raises(MalformedPathError, match="not auto"):
        urls.derivative("a.jpg", width=200, format="auto", private=True)


def test_no_original_key_starts_with_the_private_derivatives_prefix() -> None:
    with pytest.raises(MalformedPathError, match="private derivatives' prefix"):
        format_path("_p/a.jpg", "200x", "jpg", SECRET)


@pytest.mark.parametrize("expires_in", [0, -60, 604801])
def test_media_urls_refuse_a_lifetime_that_is_not_1_second_to_a_week(expires_in: int) -> None:
    urls = MediaURLs(Settings(secrets=(SECRET,)))

    with pytest.raises(MalformedPathError, match="1 to 604800 seconds"):
        urls.derivative("a.jpg", width=200, private=True, expires_in=expires_in)


def test_media_urls_give_a_private_url_the_configured_lifetime_by_default() -> None:
    urls = MediaURLs(Settings(secrets=(SECRET,), private_url_lifetime=120))
    now = time.time()

    url = urls.derivative("a.jpg", width=200, private=True)

    expires = int(url.rsplit("expires=", 1)[1].split("&")[0])
    assert int(now) + 120 <= expires <= int(now) + 120 + 12
