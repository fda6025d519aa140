"""Each refusal of the signed-URL contract names the rule the input breaks: the detail is the body of the 400 or
403 the sidecar answers, so it is asserted word for word, one input per rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from resize_sidecar.core.errors import BadSignatureError, MalformedPathError, SidecarError
from resize_sidecar.core.signing import (
    DerivativeSpec,
    encode_key,
    format_path,
    parse_path,
    parse_signed_storage_key,
    parse_spec,
    parse_storage_key,
    resolve_spec,
    validate_key,
    verify,
)
from tests.support.servers import SECRET

SIGNATURE = "0" * 32
GOOD = format_path("photo.jpg", "400x", "webp", SECRET)

REFUSALS: dict[str, tuple[Callable[[], object], type[SidecarError], str]] = {
    "a key that is not UTF-8": (
        lambda: validate_key("photo\udc80.jpg", "_r/"),
        MalformedPathError,
        "key is not valid UTF-8",
    ),
    "an empty key": (lambda: validate_key("", "_r/"), MalformedPathError, "key is empty"),
    "a key over 1024 bytes": (
        lambda: validate_key("a" * 1025, "_r/"),
        MalformedPathError,
        "key is longer than 1024 bytes",
    ),
    "a key with a backslash": (
        lambda: validate_key("a\\b.jpg", "_r/"),
        MalformedPathError,
        "key contains a control character or a backslash",
    ),
    "a key with a '..' segment": (
        lambda: validate_key("a/../b.jpg", "_r/"),
        MalformedPathError,
        "key has an empty, '.' or '..' segment",
    ),
    "a key under the derived prefix": (
        lambda: validate_key("_r/b.jpg", "_r/"),
        MalformedPathError,
        "key starts with the derived prefix '_r/'",
    ),
    "a key under the private prefix": (
        lambda: validate_key(".resize-sidecar/b.jpg", "_r/"),
        MalformedPathError,
        "keys under '.resize-sidecar/' are resize-sidecar's own",
    ),
    "a key with a name storage keeps": (
        lambda: validate_key("a/.resize-sidecar-tmp.jpg", "_r/"),
        MalformedPathError,
        "a key's names may not start with '.resize-sidecar-', which storage keeps",
    ),
    "bad dimensions": (lambda: parse_spec("400y"), MalformedPathError, "bad dimensions '400y'"),
    "an option given twice": (lambda: parse_spec("400x-q80-q90"), MalformedPathError, "option quality given twice"),
    "both flips": (
        lambda: parse_spec("400x-flipx-flipy"),
        MalformedPathError,
        "flipx-flipy is the same turn as r180: write that",
    ),
    "a focal point without fill": (
        lambda: DerivativeSpec(width=10, height=10, focal=(100, 100)),
        MalformedPathError,
        "a focal point applies to mode fill only",
    ),
    "a side of 0 pixels": (
        lambda: DerivativeSpec(width=0),
        MalformedPathError,
        "dimensions must be 1..99999 pixels, got 0",
    ),
    "an unknown mode": (
        lambda: DerivativeSpec(width=10, mode="zoom"),  # type: ignore[arg-type]
        MalformedPathError,
        "unknown mode 'zoom'",
    ),
    "fill with one side": (
        lambda: DerivativeSpec(width=10, mode="fill"),
        MalformedPathError,
        "mode fill needs both a width and a height",
    ),
    "an unknown gravity": (
        lambda: DerivativeSpec(width=10, height=10, mode="fill", gravity="up"),  # type: ignore[arg-type]
        MalformedPathError,
        "unknown gravity 'up'",
    ),
    "a gravity without fill": (
        lambda: DerivativeSpec(width=10, height=10, gravity="n"),
        MalformedPathError,
        "gravity applies to mode fill only",
    ),
    "an unknown option": (lambda: parse_spec("400x-shiny"), MalformedPathError, "unknown option 'shiny'"),
    "an unknown preset": (lambda: resolve_spec("thumb", {}), MalformedPathError, "unknown preset 'thumb'"),
    "a path outside the derivatives": (
        lambda: parse_path("/static/_r/photo.jpg/400x-" + SIGNATURE + ".webp"),
        MalformedPathError,
        "path does not start with '/media/_r/'",
    ),
    "a path without a key": (
        lambda: parse_path("/media/_r/400x-" + SIGNATURE + ".webp"),
        MalformedPathError,
        "expected {key}/{spec}-{signature}.{format}",
    ),
    "a file name without a signature": (
        lambda: parse_path("/media/_r/photo.jpg/400x.webp"),
        MalformedPathError,
        "expected {key}/{spec}-{signature}.{format}",
    ),
    "an unknown format": (
        lambda: parse_path("/media/_r/photo.jpg/400x-" + SIGNATURE + ".bmp"),
        MalformedPathError,
        "unknown format 'bmp'",
    ),
    "a signature of the wrong shape": (
        lambda: parse_path("/media/_r/photo.jpg/400x-" + "0" * 31 + ".webp"),
        BadSignatureError,
        "signature is not 32 lower-case hex digits",
    ),
    "a path that is not ASCII": (
        lambda: parse_path("/media/_r/phötö.jpg/400x-" + SIGNATURE + ".webp"),
        MalformedPathError,
        "path is not percent-encoded ASCII",
    ),
    "a key that decodes to no UTF-8": (
        lambda: parse_path("/media/_r/%FF.jpg/400x-" + SIGNATURE + ".webp"),
        MalformedPathError,
        "key is not valid UTF-8",
    ),
    "a key in lower-case percent-encoding": (
        lambda: parse_path("/media/_r/ph%c3%b6to.jpg/400x-" + SIGNATURE + ".webp"),
        MalformedPathError,
        "key is not percent-encoded canonically",
    ),
    "a wrong signature": (
        lambda: verify(parse_path(GOOD.replace("400x", "401x")), [SECRET]),
        BadSignatureError,
        "signature does not match",
    ),
    "a storage key outside the derivatives": (
        lambda: parse_storage_key("photo.jpg/400x-" + SIGNATURE + ".webp", "_r/"),
        MalformedPathError,
        "storage key does not start with '_r/'",
    ),
    "a storage key without a key": (
        lambda: parse_storage_key("_r/400x.webp", "_r/"),
        MalformedPathError,
        "expected {key}/{spec}.{format}",
    ),
    "a storage key without a format": (
        lambda: parse_storage_key("_r/photo.jpg/400x", "_r/"),
        MalformedPathError,
        "expected {key}/{spec}.{format}",
    ),
    "a storage key without a spec": (
        lambda: parse_storage_key("_r/photo.jpg/.webp", "_r/"),
        MalformedPathError,
        "expected {key}/{spec}.{format}",
    ),
    "a signed storage key without a key": (
        lambda: parse_signed_storage_key("_r/400x-" + SIGNATURE + ".webp", "_r/"),
        MalformedPathError,
        "expected {key}/{spec}-{signature}.{format}",
    ),
    "a storage key with a spec not written canonically": (
        lambda: parse_storage_key("_r/photo.jpg/400x-fit.webp", "_r/"),
        MalformedPathError,
        "spec '400x-fit' is not canonical; write it as '400x'",
    ),
    "a signed storage key with a signature of the wrong shape": (
        lambda: parse_signed_storage_key("_r/photo.jpg/400x-" + "G" * 32 + ".webp", "_r/"),
        MalformedPathError,
        "signature is not 32 lower-case hex digits",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refusal_names_the_rule_the_input_breaks(case: str) -> None:
    refuse, error, detail = REFUSALS[case]

    with pytest.raises(error) as refused:
        refuse()

    assert type(refused.value) is error
    assert refused.value.detail == detail


def test_only_the_first_segment_is_compared_with_the_derived_prefix_without_its_slash() -> None:
    validate_key("_rX/photo.jpg", "_r/")
    validate_key("_r/photo.jpg", "_rX/")
    with pytest.raises(MalformedPathError):
        validate_key("_rX/photo.jpg", "_rX/")


def test_a_key_keeps_its_slashes_and_encodes_everything_else_in_upper_case_hex() -> None:
    assert encode_key("a b/ö+%.jpg") == "a%20b/%C3%B6%2B%25.jpg"
