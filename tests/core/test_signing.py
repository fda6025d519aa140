"""The derivative URL contract (resize_sidecar.core.signing): one canonical, signed spelling per derivative.

A request path is accepted when ``parse_path``, ``verify`` and ``resolve_spec`` all pass, in that order (``accept``
below, the same steps the sidecar takes before touching storage). Every refusal is a MalformedPathError (400) or a
BadSignatureError (403), never another exception, and an accepted path always names exactly the key, spec and
format that were signed.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resize_sidecar.core.errors import BadSignatureError, MalformedPathError
from resize_sidecar.core.formats import FORMATS
from resize_sidecar.core.signing import (
    GRAVITIES,
    MAX_KEY_BYTES,
    DerivativePath,
    DerivativeSpec,
    Flip,
    Rotation,
    encode_key,
    format_path,
    format_spec,
    is_preset_name,
    parse_path,
    parse_signed_storage_key,
    parse_spec,
    parse_storage_key,
    resolve_spec,
    sign,
    validate_key,
    verify,
)

SECRET = "signing-secret-0123456789"
PRESETS = {
    "thumb": DerivativeSpec(width=200, height=200, mode="fill"),
    "hero_2x": DerivativeSpec(width=1600),
}
PREFIX = "/media/_r/"
# A well-formed signature that signs nothing: for paths whose refusal must not depend on the signature.
ANY_SIGNATURE = "0123456789abcdef0123456789abcdef"

REFUSED = (MalformedPathError, BadSignatureError)
NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]


def accept(
    raw_path: str,
    secrets: Iterable[str] = (SECRET,),
    presets: dict[str, DerivativeSpec] = PRESETS,
    *,
    media_url: str = "/media/",
    derived_prefix: str = "_r/",
) -> tuple[DerivativePath, DerivativeSpec]:
    """Everything the contract checks before storage is touched; raises MalformedPathError or BadSignatureError."""
    parsed = parse_path(raw_path, media_url=media_url, derived_prefix=derived_prefix)
    verify(parsed, secrets)
    return parsed, resolve_spec(parsed.spec, presets)


def refusal(raw_path: str) -> type[Exception] | None:
    """The error class a path is refused with, or None when it is accepted; anything else propagates."""
    try:
        accept(raw_path)
    except REFUSED as error:
        return type(error)
    return None


# ----------------------------------------------------------------------------------------------------------------
# Strategies

# Anything a file name may hold except '/', backslash, control characters (C0, DEL, C1) and surrogates; the
# punctuation that URLs and S3 treat specially is drawn often.
_SEGMENT_CHARACTERS = st.one_of(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="/\\"),
    st.sampled_from(" +%&#?~;=.-_"),
)
_SEGMENTS = st.text(_SEGMENT_CHARACTERS, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))
KEYS = (
    st.lists(_SEGMENTS, min_size=1, max_size=4)
    .map("/".join)
    .filter(lambda key: key.split("/")[0] != "_r" and len(key.encode("utf-8")) <= MAX_KEY_BYTES)
)
_SIDES = st.integers(min_value=1, max_value=99999)


@st.composite
def specs(draw: st.DrawFn) -> DerivativeSpec:
    mode = draw(st.sampled_from(("fit", "fill", "pad")))
    if mode == "fit":
        width, height = draw(st.none() | _SIDES), draw(st.none() | _SIDES)
    else:
        width, height = draw(_SIDES), draw(_SIDES)
    gravity = draw(st.sampled_from(GRAVITIES)) if mode == "fill" else "c"
    return DerivativeSpec(
        width=width,
        height=height,
        mode=mode,
        gravity=gravity,
        quality=draw(st.none() | st.integers(1, 100)),
        upscale=draw(st.booleans()),
        background=draw(st.none() | st.from_regex(r"[0-9a-f]{6}", fullmatch=True)),
        blur=draw(st.none() | st.integers(1, 100)),
        sharpen=draw(st.booleans()),
        **draw(geometry(mode, gravity)),
    )


# The eight turns of a rectangle, each in its one spelling: (rotate, flip).
TURNS: tuple[tuple[Rotation, Flip | None], ...] = (
    (0, None), (90, None), (180, None), (270, None), (0, "x"), (0, "y"), (90, "x"), (270, "x"),
)  # fmt: skip


@st.composite
def geometry(draw: st.DrawFn, mode: str, gravity: str) -> dict[str, Any]:
    """A focal point (fill without a gravity only), a crop and a turn, each left out (the default) at times."""
    per_mille = st.integers(0, 1000)
    options: dict[str, Any] = {}
    if mode == "fill" and gravity == "c" and draw(st.booleans()):
        options["focal"] = draw(st.tuples(per_mille, per_mille).filter(lambda point: point != (500, 500)))
    if draw(st.booleans()):
        x, y = draw(st.integers(0, 999)), draw(st.integers(0, 999))
        crop = (x, y, draw(st.integers(1, 1000 - x)), draw(st.integers(1, 1000 - y)))
        if crop != (0, 0, 1000, 1000):
            options["crop"] = crop
    options["rotate"], options["flip"] = draw(st.sampled_from(TURNS))
    return options


FORMATS_ST = st.sampled_from(FORMATS)
SPEC_TEXTS = st.one_of(specs().map(format_spec), st.sampled_from(sorted(PRESETS)))
SECRETS_ST = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)

# Replacement and inserted characters: URL syntax, hex digits in both cases, ASCII, any character, surrogates.
_MUTANT_CHARACTERS = st.one_of(
    st.sampled_from("%/.-_x?#;+ 0123456789abcdefABCDEF"),
    st.characters(max_codepoint=0x7F),
    st.characters(exclude_categories=["Cs"]),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
)


# ----------------------------------------------------------------------------------------------------------------
# Round trips


@given(key=KEYS, spec=specs(), fmt=FORMATS_ST, secret=SECRETS_ST)
@example(key="photos/café & crème+1 ~;#?%.jpg", spec=DerivativeSpec(400, 300, "fill", "sm", 70), fmt="webp", secret="s")
def test_a_formatted_path_parses_back_to_its_key_spec_and_format_and_verifies(
    key: str, spec: DerivativeSpec, fmt: str, secret: str
) -> None:
    path = format_path(key, spec, fmt, secret)
    parsed, resolved = accept(path, secrets=[secret], presets={})

    assert (parsed.key, parsed.spec, parsed.fmt) == (key, format_spec(spec), fmt)
    assert resolved == spec
    assert parsed.signature == sign(key, format_spec(spec), fmt, secret)
    assert parsed.storage_key("_r/") == f"_r/{key}/{parsed.spec}.{fmt}"
    assert parsed.signed_storage_key("_r/") == f"_r/{key}/{parsed.spec}-{parsed.signature}.{fmt}"


def test_every_secret_s_signature_of_a_derivative_names_the_one_stored_object() -> None:
    first, second = (parse_path(format_path("a.jpg", "200x", "webp", secret)) for secret in ("one", "two"))

    assert first.signature != second.signature
    assert first.storage_key("_r/") == second.storage_key("_r/") == "_r/a.jpg/200x.webp"
    assert first.signed_storage_key("_r/") != second.signed_storage_key("_r/")


@given(key=KEYS, spec=SPEC_TEXTS, fmt=FORMATS_ST)
def test_formatting_a_parsed_path_again_gives_the_same_path(key: str, spec: str, fmt: str) -> None:
    path = format_path(key, spec, fmt, SECRET)
    parsed = parse_path(path)

    assert format_path(parsed.key, parsed.spec, parsed.fmt, SECRET) == path


@given(key=KEYS, spec=SPEC_TEXTS, fmt=FORMATS_ST)
@example(key="photos/café 1.jpg", spec="thumb", fmt="avif")
def test_a_storage_key_parses_back_to_its_derivative(key: str, spec: str, fmt: str) -> None:
    path = format_path(key, spec, fmt, SECRET)
    parsed = parse_path(path)

    assert parsed.public_path("/media/", "_r/") == path
    for derived_prefix in ("_r/", "derived.v2/"):
        assert parse_storage_key(parsed.storage_key(derived_prefix), derived_prefix) == parsed.stored
        assert parse_signed_storage_key(parsed.signed_storage_key(derived_prefix), derived_prefix) == parsed
        # Neither layout's key is read as the other's.
        with pytest.raises(MalformedPathError):
            parse_storage_key(parsed.signed_storage_key(derived_prefix), derived_prefix)
        with pytest.raises(MalformedPathError):
            parse_signed_storage_key(parsed.storage_key(derived_prefix), derived_prefix)


@pytest.mark.parametrize(
    "storage_key",
    [
        pytest.param("photos/a.jpg", id="an original"),
        pytest.param(f"_r/a.jpg/200x-{ANY_SIGNATURE}.bmp", id="unknown format"),
        pytest.param(f"_r/a.jpg/200x-{ANY_SIGNATURE}.jpg.txt", id="a name after the format"),
        pytest.param(f"_r/a.jpg/200x-{ANY_SIGNATURE[:-1]}.jpg", id="short signature"),
        pytest.param(f"_r/a.jpg/200x-{ANY_SIGNATURE.upper()}.jpg", id="upper-case signature"),
        pytest.param(f"_r/a.jpg/-{ANY_SIGNATURE}.jpg", id="no spec"),
        pytest.param(f"_r/200x-{ANY_SIGNATURE}.jpg", id="no key"),
        pytest.param(f"_r/../200x-{ANY_SIGNATURE}.jpg", id="traversal key"),
        pytest.param(f"_r/_r/a.jpg/200x-{ANY_SIGNATURE}.jpg", id="key under the derived prefix"),
        pytest.param("_r/resize-sidecar-check-0123", id="the check's object"),
    ],
)
def test_what_is_not_a_signed_storage_key_is_malformed(storage_key: str) -> None:
    with pytest.raises(MalformedPathError):
        parse_signed_storage_key(storage_key, "_r/")


@pytest.mark.parametrize(
    "storage_key",
    [
        pytest.param("photos/a.jpg", id="an original"),
        pytest.param("_r/a.jpg/200x.bmp", id="unknown format"),
        pytest.param("_r/a.jpg/200x.jpg.txt", id="a name after the format"),
        pytest.param("_r/a.jpg/.jpg", id="no spec"),
        pytest.param("_r/a.jpg/200x-q080.jpg", id="a spec not written canonically"),
        pytest.param("_r/a.jpg/Thumb.jpg", id="not a preset's name"),
        pytest.param("_r/200x.jpg", id="no key"),
        pytest.param("_r/../200x.jpg", id="traversal key"),
        pytest.param("_r/_r/a.jpg/200x.jpg", id="key under the derived prefix"),
        pytest.param(f"_r/a.jpg/200x-{ANY_SIGNATURE}.jpg", id="the layout with signatures"),
        pytest.param("_r/resize-sidecar-check-0123", id="the check's object"),
    ],
)
def test_what_is_not_a_derivative_s_storage_key_is_malformed(storage_key: str) -> None:
    with pytest.raises(MalformedPathError):
        parse_storage_key(storage_key, "_r/")


@given(specs())
def test_a_formatted_spec_parses_back_to_the_same_spec(spec: DerivativeSpec) -> None:
    assert parse_spec(format_spec(spec)) == spec


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("256x256-fill-fp420.300", DerivativeSpec(256, 256, "fill", focal=(420, 300))),
        ("256x256-fill-fp0.1000", DerivativeSpec(256, 256, "fill", focal=(0, 1000))),
        ("400x-crop100.0.600.900", DerivativeSpec(400, crop=(100, 0, 600, 900))),
        ("0x0-crop999.999.1.1", DerivativeSpec(crop=(999, 999, 1, 1))),
        ("400x300-r90", DerivativeSpec(400, 300, rotate=90)),
        ("400x300-r180", DerivativeSpec(400, 300, rotate=180)),
        ("400x300-r270", DerivativeSpec(400, 300, rotate=270)),
        ("400x300-flipx", DerivativeSpec(400, 300, flip="x")),
        ("400x300-flipy", DerivativeSpec(400, 300, flip="y")),
        ("400x300-r90-flipx", DerivativeSpec(400, 300, rotate=90, flip="x")),
        ("400x300-r270-flipx", DerivativeSpec(400, 300, rotate=270, flip="x")),
        (
            "256x256-fill-fp420.300-crop100.0.600.900-r90-flipx-q70-up-blur5-sharp",
            DerivativeSpec(
                256, 256, "fill", quality=70, upscale=True, blur=5, sharpen=True,
                focal=(420, 300), crop=(100, 0, 600, 900), rotate=90, flip="x",
            ),
        ),
    ],
)  # fmt: skip
def test_focal_point_crop_rotate_and_flip_are_spelled_in_their_place_in_the_canonical_order(
    text: str, spec: DerivativeSpec
) -> None:
    assert parse_spec(text) == spec
    assert format_spec(spec) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0x0-flipx-flipy", "r180"),
        ("0x0-r180-flipx", "flipy"),
        ("0x0-r180-flipy", "flipx"),
        ("0x0-r90-flipy", "r270-flipx"),
        ("0x0-r270-flipy", "r90-flipx"),
    ],
)
def test_a_turn_spelled_another_way_is_refused_naming_its_one_spelling(text: str, canonical: str) -> None:
    with pytest.raises(MalformedPathError, match=f"same turn as {canonical}: write that"):
        parse_spec(text)


@given(st.text(alphabet="0123456789x-abcdefghilmnopqrstuwy.", max_size=24))
def test_any_spec_text_that_parses_is_already_its_own_canonical_spelling(text: str) -> None:
    try:
        spec = parse_spec(text)
    except MalformedPathError:
        return
    assert format_spec(spec) == text


@pytest.mark.parametrize(
    ("media_url", "derived_prefix"),
    [
        pytest.param("/media/", "_r/", id="defaults"),
        pytest.param("/", "d/", id="media at the root, one-letter prefix"),
        pytest.param("/static/img.v2/", "derived-1.x/", id="nested media url, dotted prefix"),
    ],
)
def test_a_path_round_trips_under_any_media_url_and_derived_prefix(media_url: str, derived_prefix: str) -> None:
    where = {"media_url": media_url, "derived_prefix": derived_prefix}
    key = "albums/2024/été à la mer.jpg"
    path = format_path(key, DerivativeSpec(width=640), "avif", SECRET, **where)

    assert path.startswith(media_url + derived_prefix)
    parsed, spec = accept(path, media_url=media_url, derived_prefix=derived_prefix)
    assert (parsed.key, spec, parsed.fmt) == (key, DerivativeSpec(width=640), "avif")
    with pytest.raises(MalformedPathError):
        parse_path(path, media_url="/elsewhere/", derived_prefix=derived_prefix)


def test_the_signature_does_not_depend_on_where_media_is_served() -> None:
    paths = [
        format_path("a/b.png", "thumb", "png", SECRET),
        format_path("a/b.png", "thumb", "png", SECRET, media_url="/", derived_prefix="derived/"),
    ]

    assert {path.rsplit("-", 1)[1] for path in paths} == {sign("a/b.png", "thumb", "png", SECRET) + ".png"}


# ----------------------------------------------------------------------------------------------------------------
# Only the canonical spelling is accepted

KEY = "photos/2024/café & crème+1 (final).jpg"
SPEC = DerivativeSpec(width=400, height=300, mode="fill", gravity="sm", quality=70)
GOOD = format_path(KEY, SPEC, "webp", SECRET)
GOOD_HEAD, GOOD_FILENAME = GOOD.rsplit("/", 1)
GOOD_SIGNATURE = parse_path(GOOD).signature


def _with_encoded_key(encoded_key: str, path: str = GOOD) -> str:
    return PREFIX + encoded_key + "/" + path.rsplit("/", 1)[1]


ENCODED_KEY = encode_key(KEY)
assert ENCODED_KEY == "photos/2024/caf%C3%A9%20%26%20cr%C3%A8me%2B1%20%28final%29.jpg"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%C3%A9", "%c3%a9")), id="lower-case percent hex"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%C3%A9", "%C3%a9")), id="mixed-case percent hex"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("/", "%2F")), id="%2F for every slash"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("/", "%2f", 1)), id="%2f for one slash"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("photos", "%70hotos")), id="encoded unreserved letter"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("2024", "%32024")), id="encoded unreserved digit"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace(".jpg", "%2Ejpg")), id="encoded unreserved dot"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%20", " ")), id="raw space"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%20", "+")), id="plus for space (form encoding)"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%2B", "+")), id="raw plus"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%26", "&")), id="raw ampersand"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%28", "(")), id="raw parenthesis"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%C3%A9", "é")), id="raw UTF-8 character"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%C3%A9", "%E9")), id="latin-1 percent escape"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%C3%A9", "%C3%A9%")), id="stray percent"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("%C3%A9", "%C3%G9")), id="percent with non-hex"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("/", "//", 1)), id="double slash inside the key"),
        pytest.param(_with_encoded_key("/" + ENCODED_KEY), id="leading slash on the key"),
        pytest.param(_with_encoded_key(ENCODED_KEY + "/"), id="trailing slash on the key"),
        pytest.param(GOOD + "/", id="trailing slash on the path"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("/", "/./", 1)), id="dot segment"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("/", "/%2E/", 1)), id="encoded dot segment"),
        pytest.param(_with_encoded_key("photos/%2e%2e/" + ENCODED_KEY), id="%2e%2e segment"),
        pytest.param(_with_encoded_key("photos/%2E%2E/" + ENCODED_KEY), id="%2E%2E segment"),
        pytest.param(_with_encoded_key("photos/../" + ENCODED_KEY), id="raw .. segment"),
        pytest.param(_with_encoded_key("photos%2F..%2F" + ENCODED_KEY), id="encoded traversal"),
        pytest.param(_with_encoded_key(ENCODED_KEY.replace("/", "%5C", 1)), id="backslash for slash"),
        pytest.param(GOOD.replace("/media/_r/", "/media//_r/"), id="double slash in the prefix"),
        pytest.param(GOOD.replace("/media/_r/", "/media/%5Fr/"), id="encoded derived prefix"),
        pytest.param(GOOD.replace("/media/_r/", "/media/_R/"), id="upper-case derived prefix"),
        pytest.param(GOOD.replace("/media/_r/", "/MEDIA/_r/"), id="upper-case media url"),
        pytest.param(GOOD.replace("/media/_r/", "/media/_r/./"), id="dot segment after the prefix"),
        pytest.param(GOOD + "?", id="empty query string"),
        pytest.param(GOOD + "?v=2", id="query string"),
        pytest.param(GOOD + "?sig=" + GOOD_SIGNATURE, id="signature in a query string"),
        pytest.param(GOOD + "#top", id="fragment"),
        pytest.param(GOOD + ";v=2", id="path parameter"),
        pytest.param(GOOD.replace(".webp", ".WEBP"), id="upper-case format"),
        pytest.param(GOOD.replace(".webp", ".webp.webp"), id="format repeated"),
        pytest.param(GOOD.replace(GOOD_SIGNATURE, GOOD_SIGNATURE.upper()), id="upper-case signature"),
        pytest.param(GOOD.replace("-" + GOOD_SIGNATURE, "--" + GOOD_SIGNATURE), id="double dash before signature"),
        pytest.param(GOOD.replace("400x300-", "400x300--"), id="double dash inside the spec"),
        pytest.param(GOOD.replace("400x300", "0400x300"), id="leading zero in width"),
        pytest.param(GOOD.replace("400x300", "400x0300"), id="leading zero in height"),
        pytest.param(GOOD.replace("-q70", "-q070"), id="leading zero in quality"),
        pytest.param(GOOD.replace("400x300", "400X300"), id="upper-case X"),
        pytest.param(GOOD.replace("-fill-sm-q70", "-fill-q70-sm"), id="options reordered"),
        pytest.param(GOOD.replace("-fill-sm-q70", "-sm-fill-q70"), id="gravity before mode"),
        pytest.param(GOOD.replace("-q70", "-q70-q70"), id="option repeated"),
        pytest.param(GOOD.replace("-q70", "-q70-q80"), id="option given twice with two values"),
        pytest.param(GOOD.replace("-fill", "-fill-fill"), id="mode repeated"),
        pytest.param(GOOD.replace("-sm", "-sm-c"), id="two gravities"),
    ],
)
def test_a_non_canonical_spelling_of_a_signed_path_is_refused(path: str) -> None:
    assert path != GOOD
    assert refusal(path) is not None


@pytest.mark.parametrize(
    "spec_text",
    [
        pytest.param("400x300-fit", id="default mode spelled out"),
        pytest.param("400x300-fill-c", id="default gravity spelled out"),
        pytest.param("400x-fit-q80", id="default mode spelled out with an option"),
        pytest.param("400x300-q70-fill", id="option before mode"),
        pytest.param("400x300-fill-q70-sm", id="quality before gravity"),
        pytest.param("400x300-sharp-up", id="sharp before up"),
        pytest.param("400x300-blur5-bg000000-pad", id="everything backwards"),
        pytest.param("400x300-up-up", id="flag repeated"),
        pytest.param("400x300-q70-q70", id="quality repeated"),
        pytest.param("0400x300", id="leading zero in width"),
        pytest.param("400x0300", id="leading zero in height"),
        pytest.param("00x0", id="leading zero in full size"),
        pytest.param("0x300", id="zero width"),
        pytest.param("400x0", id="zero height"),
        pytest.param("x", id="full size written as bare x"),
        pytest.param("400x300-q070", id="leading zero in quality"),
        pytest.param("400x300-blur05", id="leading zero in blur"),
        pytest.param("400x300-q0", id="quality zero"),
        pytest.param("400x300-q101", id="quality over 100"),
        pytest.param("400x300-blur101", id="blur over 100"),
        pytest.param("400X300", id="upper-case X"),
        pytest.param("400x300-Q70", id="upper-case option"),
        pytest.param("400x300-pad-bgFFFFFF", id="upper-case background"),
        pytest.param("400x300-pad-bgfff", id="short background"),
        pytest.param("400x300-", id="trailing dash"),
        pytest.param("-400x300", id="leading dash"),
        pytest.param("400x300--fill", id="empty option"),
        pytest.param("+400x300", id="plus sign"),
        pytest.param(" 400x300", id="leading space"),
        pytest.param("400x300 ", id="trailing space"),
        pytest.param("٤٠٠x300", id="non-ASCII digits"),
        pytest.param("400x300-sm", id="gravity without fill"),
        pytest.param("400x-fill", id="fill without a height"),
        pytest.param("100000x1", id="six-digit width"),
        pytest.param("400x300-zoom", id="unknown option"),
        pytest.param("400x300-fill-fp500.500", id="focal point at the centre, the default"),
        pytest.param("400x300-fill-fp050.500", id="leading zero in a focal point"),
        pytest.param("400x300-fill-fp1001.5", id="focal point past the edge"),
        pytest.param("400x300-fill-fp5.5.5", id="focal point of three values"),
        pytest.param("400x300-fp250.250", id="focal point without fill"),
        pytest.param("400x300-fill-n-fp250.250", id="gravity and a focal point"),
        pytest.param("400x300-fill-sm-fp250.250", id="attention and a focal point"),
        pytest.param("400x300-fill-crop0.0.500.500-fp250.250", id="focal point after the crop"),
        pytest.param("400x-crop0.0.1000.1000", id="crop of the whole picture, the default"),
        pytest.param("400x-crop0.0.0.500", id="crop of no width"),
        pytest.param("400x-crop600.0.500.500", id="crop past the right edge"),
        pytest.param("400x-crop0.600.500.500", id="crop past the bottom edge"),
        pytest.param("400x-crop0.0.500", id="crop of three values"),
        pytest.param("400x-crop0.0.0500.500", id="leading zero in a crop"),
        pytest.param("400x-crop0,0,500,500", id="crop with commas"),
        pytest.param("400x-r0", id="rotate by nothing"),
        pytest.param("400x-r45", id="rotate by other than a quarter turn"),
        pytest.param("400x-r360", id="rotate by a whole turn"),
        pytest.param("400x-r-90", id="rotate anticlockwise"),
        pytest.param("400x-flip", id="flip without its axis"),
        pytest.param("400x-flipx-flipy", id="both flips, the same turn as r180"),
        pytest.param("400x-r180-flipx", id="r180-flipx, the same turn as flipy"),
        pytest.param("400x-r180-flipy", id="r180-flipy, the same turn as flipx"),
        pytest.param("400x-r90-flipy", id="r90-flipy, the same turn as r270-flipx"),
        pytest.param("400x-r270-flipy", id="r270-flipy, the same turn as r90-flipx"),
        pytest.param("400x-flipx-r90", id="flip before rotate"),
        pytest.param("400x-r90-crop0.0.500.500", id="rotate before the crop"),
        pytest.param("400x-q70-r90", id="rotate after the quality"),
    ],
)
def test_a_non_canonical_or_invalid_spec_is_refused_everywhere(spec_text: str) -> None:
    with pytest.raises(MalformedPathError):
        parse_spec(spec_text)
    with pytest.raises(MalformedPathError):
        resolve_spec(spec_text, PRESETS)
    with pytest.raises(MalformedPathError):
        format_path(KEY, spec_text, "jpg", SECRET)
    # In a path: refused with the canonical spec's signature, and even with a signature made over this very text.
    canonical_signature = GOOD_SIGNATURE
    own_signature = sign(KEY, spec_text, "jpg", SECRET)
    assert refusal(f"{PREFIX}{ENCODED_KEY}/{spec_text}-{canonical_signature}.jpg") is not None
    assert refusal(f"{PREFIX}{ENCODED_KEY}/{spec_text}-{own_signature}.jpg") is MalformedPathError


def test_nfc_and_nfd_spellings_of_a_key_are_two_keys_each_signed_on_its_own() -> None:
    nfc, nfd = unicodedata.normalize("NFC", "photos/café.jpg"), unicodedata.normalize("NFD", "photos/café.jpg")
    assert nfc != nfd
    nfc_path, nfd_path = (format_path(key, SPEC, "jpg", SECRET) for key in (nfc, nfd))

    assert accept(nfc_path)[0].key == nfc
    assert accept(nfd_path)[0].key == nfd
    nfd_key_nfc_signature = _with_encoded_key(encode_key(nfd), nfc_path)
    nfc_key_nfd_signature = _with_encoded_key(encode_key(nfc), nfd_path)
    assert refusal(nfd_key_nfc_signature) is BadSignatureError
    assert refusal(nfc_key_nfd_signature) is BadSignatureError


@given(key=KEYS, form=st.sampled_from(("NFC", "NFD", "NFKC", "NFKD")), fmt=FORMATS_ST)
@example(key="photos/café.jpg", form="NFD", fmt="jpg")
@example(key=unicodedata.normalize("NFD", "photos/café.jpg"), form="NFC", fmt="jpg")
@example(key="a/\u2025/b.jpg", form="NFKC", fmt="png")  # TWO DOT LEADER: '..' under NFKC
@example(key="a\uff0fb.jpg", form="NFKC", fmt="png")  # FULLWIDTH SOLIDUS: '/' under NFKC
def test_a_signature_never_carries_over_to_another_normalisation_of_its_key(
    key: str, form: NormalForm, fmt: str
) -> None:
    path = format_path(key, SPEC, fmt, SECRET)
    other = unicodedata.normalize(form, key)
    moved = _with_encoded_key(encode_key(other), path)

    try:
        parsed, _ = accept(moved)
    except REFUSED:
        assert other != key
    else:
        assert parsed.key == key == other


SIGNED_CAT = format_path("cat.jpg", DerivativeSpec(400, 300), "jpg", SECRET)
CAT_FILENAME = SIGNED_CAT.rsplit("/", 1)[1]
CAT_SIGNATURE = parse_path(SIGNED_CAT).signature


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{SIGNED_CAT}/{CAT_FILENAME}", id="signed path used as the key, same filename"),
        pytest.param(f"{SIGNED_CAT}/800x600-{CAT_SIGNATURE}.jpg", id="signed path used as the key, other spec"),
        pytest.param(f"{PREFIX}media/_r/cat.jpg/{CAT_FILENAME}/{CAT_FILENAME}", id="whole public path as the key"),
        pytest.param(f"{PREFIX}_r/cat.jpg/{CAT_FILENAME}/{CAT_FILENAME}", id="storage key as the key"),
        pytest.param(f"{PREFIX}{quote(SIGNED_CAT, safe='')}/{CAT_FILENAME}", id="percent-encoded signed path as key"),
        pytest.param(f"{PREFIX}{CAT_SIGNATURE}/cat.jpg/{CAT_FILENAME}", id="signature as a leading segment"),
        pytest.param(f"{PREFIX}cat.jpg/{CAT_SIGNATURE}/{CAT_FILENAME}", id="signature as a middle segment"),
        pytest.param(f"{PREFIX}cat.jpg/400x300-{CAT_SIGNATURE}-{CAT_SIGNATURE}.jpg", id="signature twice"),
        pytest.param(f"{PREFIX}dog.jpg/{CAT_FILENAME}", id="signature moved to another key"),
        pytest.param(f"{PREFIX}cat.jpg/400x300-{CAT_SIGNATURE}.png", id="signature moved to another format"),
        pytest.param(f"{PREFIX}cat.jpg/400x301-{CAT_SIGNATURE}.jpg", id="signature moved to another spec"),
        pytest.param(f"{PREFIX}cat.jpg/thumb-{CAT_SIGNATURE}.jpg", id="signature moved to a preset"),
        pytest.param(f"{PREFIX}cat.jpg/400x300.jpg-{CAT_SIGNATURE}.jpg", id="format folded into the spec"),
    ],
)
def test_a_valid_signature_embedded_in_another_path_is_refused(path: str) -> None:
    """The injection that broke thumbor's signing: a signature is only valid for the whole of its own path."""
    assert accept(SIGNED_CAT)[0].key == "cat.jpg"
    assert refusal(path) is not None


@given(signed_key=KEYS, other_key=KEYS, spec=SPEC_TEXTS, fmt=FORMATS_ST)
def test_a_verified_path_always_names_the_signed_key(signed_key: str, other_key: str, spec: str, fmt: str) -> None:
    path = format_path(signed_key, spec, fmt, SECRET)
    filename = path.rsplit("/", 1)[1]
    for encoded in (encode_key(other_key), encode_key(other_key + "/" + signed_key), path[len(PREFIX) :]):
        try:
            parsed, _ = accept(f"{PREFIX}{encoded}/{filename}")
        except REFUSED:
            continue
        assert parsed.key == signed_key


# ----------------------------------------------------------------------------------------------------------------
# Single mutations: refused, never accepted for something else


def _mutate(path: str, kind: str, index: int, character: str, byte: int) -> str:
    index %= len(path)
    if kind == "replace":
        return path[:index] + character + path[index + 1 :]
    if kind == "insert":
        return path[:index] + character + path[index:]
    if kind == "delete":
        return path[:index] + path[index + 1 :]
    # One byte of the request line replaced, decoded the way undecodable bytes reach Python (surrogateescape).
    raw = bytearray(path.encode("utf-8"))
    raw[index] = byte
    return raw.decode("utf-8", "surrogateescape")


_MUTATIONS = st.tuples(
    st.sampled_from(("replace", "insert", "delete", "byte")),
    st.integers(min_value=0, max_value=10_000),
    _MUTANT_CHARACTERS,
    st.integers(min_value=0, max_value=255),
)


# Each example mutates one signed path many times, one change at a time.
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=KEYS, spec=SPEC_TEXTS, fmt=FORMATS_ST, mutations=st.lists(_MUTATIONS, min_size=1, max_size=30))
def test_a_single_mutation_of_a_signed_path_is_refused_or_changes_nothing(
    key: str, spec: str, fmt: str, mutations: list[tuple[str, int, str, int]]
) -> None:
    path = format_path(key, spec, fmt, SECRET)
    original = parse_path(path)

    for mutation in mutations:
        mutated = _mutate(path, *mutation)
        try:
            parsed, _ = accept(mutated)
        except REFUSED:
            continue
        assert parsed == original
        assert mutated == path


SWEPT = {
    "ascii key, explicit spec": format_path(
        "a/b.jpg", DerivativeSpec(40, 30, "pad", background="ffffff"), "png", SECRET
    ),
    "escaped key, every option": format_path(
        "é/ü ~;+%&#?.jpg", DerivativeSpec(9, 9, "fill", "ne", 5, True, "00ff00", 7, True), "webp", SECRET
    ),
    "preset": format_path("x/y/z", "hero_2x", "avif", SECRET),
    "full size": format_path("k", DerivativeSpec(), "gif", SECRET),
}
_SWEEP_BYTES = [*range(0x80), 0x80, 0x9F, 0xA0, 0xC3, 0xE9, 0xED, 0xFF]
_SWEEP_INSERTS = [chr(code) for code in range(0x20, 0x7F)]


@pytest.mark.parametrize("path", [pytest.param(path, id=name) for name, path in SWEPT.items()])
def test_every_single_byte_change_of_a_signed_path_is_refused(path: str) -> None:
    assert accept(path)
    raw = path.encode("ascii")
    mutants = set()
    for index in range(len(raw)):
        for byte in _SWEEP_BYTES:
            mutants.add((raw[:index] + bytes([byte]) + raw[index + 1 :]).decode("utf-8", "surrogateescape"))
        mutants.add(path[:index] + path[index + 1 :])
        mutants.update(path[:index] + character + path[index:] for character in _SWEEP_INSERTS)
    mutants.discard(path)

    outcomes = Counter(refusal(mutant) for mutant in mutants)

    assert outcomes[None] == 0
    assert outcomes[MalformedPathError] > 0 and outcomes[BadSignatureError] > 0


# ----------------------------------------------------------------------------------------------------------------
# Keys

_TOO_LONG = "é" * 512 + "a"
_LONGEST = {
    "two-byte characters": "é" * 512,
    "three-byte characters": "a" + "€" * 341,
    "four-byte characters": "😀" * 256,
    "nested segments": "/".join(["é" * 50] * 10) + "/" + "b" * 14,
    "ASCII": "a" * 1024,
}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("..", id="dot-dot"),
        pytest.param(".", id="dot"),
        pytest.param("a/../b", id="dot-dot segment"),
        pytest.param("../a", id="leading dot-dot segment"),
        pytest.param("a/..", id="trailing dot-dot segment"),
        pytest.param("a/./b", id="dot segment"),
        pytest.param("./a", id="leading dot segment"),
        pytest.param("a//b", id="empty segment"),
        pytest.param("/a", id="leading slash"),
        pytest.param("a/", id="trailing slash"),
        pytest.param("/", id="slash alone"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("..\\a", id="backslash traversal"),
        pytest.param("a\x00b", id="NUL"),
        pytest.param("a\nb", id="line feed"),
        pytest.param("a\rb", id="carriage return"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x1bb", id="escape"),
        pytest.param("a\x1fb", id="last C0 control"),
        pytest.param("a\x7fb", id="DEL"),
        pytest.param("a\x80b", id="first C1 control"),
        pytest.param("a\x85b", id="next line (C1)"),
        pytest.param("a\x9fb", id="last C1 control"),
        pytest.param("a\ud800b", id="lone high surrogate"),
        pytest.param("a\udc80b", id="lone low surrogate"),
        pytest.param(_TOO_LONG, id="1025 UTF-8 bytes"),
        pytest.param("a" * 1025, id="1025 ASCII bytes"),
        pytest.param("€" * 342, id="1026 bytes in 342 characters"),
        pytest.param("_r", id="derived prefix segment alone"),
        pytest.param("_r/x", id="under the derived prefix"),
        pytest.param("_r/a/b.jpg/400x-" + ANY_SIGNATURE + ".jpg", id="a derivative's storage key"),
        pytest.param(".resize-sidecar/upload/manifest.json", id="under the private prefix"),
        pytest.param("a/.resize-sidecar-meta-b.jpg", id="a local storage's metadata file"),
        pytest.param(".resize-sidecar-tmp-1234/b.jpg", id="a local storage's temporary file"),
        pytest.param("a/.resize-sidecar-x", id="any name storage keeps"),
    ],
)
def test_a_key_that_breaks_a_rule_is_refused_as_malformed(key: str) -> None:
    with pytest.raises(MalformedPathError) as refused:
        validate_key(key, "_r/")
    assert refused.value.status == 400
    with pytest.raises(MalformedPathError):
        format_path(key, "thumb", "jpg", SECRET)
    # The same key arriving in a request path, whatever its signature.
    encoded = quote(key.encode("utf-8", "surrogatepass"), safe="/")
    with pytest.raises(MalformedPathError):
        parse_path(f"{PREFIX}{encoded}/thumb-{ANY_SIGNATURE}.jpg")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("a", id="one character"),
        *(pytest.param(key, id=f"exactly 1024 bytes, {name}") for name, key in _LONGEST.items()),
        pytest.param("...", id="three dots"),
        pytest.param(".hidden/..x/a..b", id="dots inside segments"),
        pytest.param(".resize-sidecars/a.resize-sidecar-b", id="near the names storage keeps"),
        pytest.param("_r_/x", id="near the derived prefix"),
        pytest.param("_rx", id="derived prefix as a word's start"),
        pytest.param("x/_r/y", id="derived prefix segment further down"),
        pytest.param(" a b /+%&#?~;=", id="spaces and URL punctuation"),
        pytest.param("a\u00a0b\u2028c\ufeffd", id="non-control separators"),
        pytest.param("日本/写真.jpg", id="CJK"),
    ],
)
def test_a_key_within_the_rules_round_trips(key: str) -> None:
    validate_key(key, "_r/")
    path = format_path(key, "thumb", "jpg", SECRET)
    parsed, spec = accept(path)

    assert parsed.key == key
    assert spec == PRESETS["thumb"]


def test_the_key_length_limit_counts_utf8_bytes() -> None:
    assert MAX_KEY_BYTES == 1024
    assert {len(key.encode("utf-8")) for key in _LONGEST.values()} == {MAX_KEY_BYTES}
    assert len(_TOO_LONG.encode("utf-8")) == MAX_KEY_BYTES + 1


def test_the_derived_prefix_rule_follows_the_configured_prefix() -> None:
    validate_key("_r/x", "derived/")
    with pytest.raises(MalformedPathError):
        validate_key("derived/x", "derived/")
    with pytest.raises(MalformedPathError):
        validate_key("derived", "derived/")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{PREFIX}a\ud800b/thumb-{ANY_SIGNATURE}.jpg", id="in the key"),
        pytest.param(f"{PREFIX}ab/thumb\udc80-{ANY_SIGNATURE}.jpg", id="in the spec"),
        pytest.param(f"{PREFIX}ab/thumb-{ANY_SIGNATURE}.jpg\udcff", id="in the format"),
        pytest.param(f"{PREFIX}a\udcc3\udca9/thumb-{ANY_SIGNATURE}.jpg", id="escaped UTF-8 bytes in the key"),
        pytest.param(f"{PREFIX}caf\u00e9/thumb-{ANY_SIGNATURE}.jpg", id="raw latin-1 in the key"),
        pytest.param(f"{PREFIX}ab/th\u00fcmb-{ANY_SIGNATURE}.jpg", id="raw latin-1 in the spec"),
    ],
)
def test_raw_non_ascii_characters_in_a_path_are_malformed(path: str) -> None:
    with pytest.raises(MalformedPathError):
        parse_path(path)


def test_a_raw_surrogate_in_the_signature_is_a_bad_signature() -> None:
    with pytest.raises(BadSignatureError):
        parse_path(f"{PREFIX}ab/thumb-{ANY_SIGNATURE[:31]}\udcff.jpg")


# ----------------------------------------------------------------------------------------------------------------
# Secrets and rotation

OLD, NEW = "rotation-secret-A", "rotation-secret-B"


def test_a_path_signed_with_the_old_secret_verifies_while_the_old_secret_is_listed() -> None:
    parsed = parse_path(format_path("photos/café.jpg", "thumb", "jpg", OLD))

    verify(parsed, (NEW, OLD))
    verify(parsed, [OLD])
    verify(parsed, iter((NEW, OLD)))


def test_a_path_signed_with_a_retired_secret_is_refused() -> None:
    parsed = parse_path(format_path("photos/café.jpg", "thumb", "jpg", OLD))

    with pytest.raises(BadSignatureError) as refused:
        verify(parsed, (NEW,))
    assert refused.value.status == 403
    with pytest.raises(BadSignatureError):
        verify(parsed, ())


def test_a_path_signed_with_the_new_secret_verifies_during_and_after_rotation() -> None:
    parsed = parse_path(format_path("photos/café.jpg", "thumb", "jpg", NEW))

    verify(parsed, (NEW, OLD))
    verify(parsed, (NEW,))
    with pytest.raises(BadSignatureError):
        verify(parsed, (OLD,))


def test_the_signature_is_hmac_sha256_of_key_slash_spec_dot_format_cut_to_32_hex_digits() -> None:
    message = "photos/café.jpg/400x300-fill.webp".encode()
    expected = hmac.new(OLD.encode("utf-8"), message, hashlib.sha256).hexdigest()[:32]

    # Pinned as well, for implementations of the contract in other languages.
    assert expected == "7fd4a3ccc33a2a197317d297a3cceb5b"
    assert sign("photos/café.jpg", "400x300-fill", "webp", OLD) == expected
    assert format_path("photos/café.jpg", DerivativeSpec(400, 300, "fill"), "webp", OLD) == (
        f"/media/_r/photos/caf%C3%A9.jpg/400x300-fill-{expected}.webp"
    )


def test_a_signature_signs_the_decoded_key_not_its_url_encoding() -> None:
    encoded_message = b"photos/caf%C3%A9.jpg/400x300-fill.webp"

    assert (
        sign("photos/café.jpg", "400x300-fill", "webp", OLD)
        != (hmac.new(OLD.encode(), encoded_message, hashlib.sha256).hexdigest()[:32])
    )


# ----------------------------------------------------------------------------------------------------------------
# Presets


def test_a_preset_name_resolves_to_its_spec() -> None:
    assert resolve_spec("thumb", PRESETS) == DerivativeSpec(width=200, height=200, mode="fill")
    assert resolve_spec("hero_2x", PRESETS) == DerivativeSpec(width=1600)


def test_a_path_signed_for_a_preset_accepts_with_the_preset_spec() -> None:
    path = format_path("a/b.jpg", "thumb", "webp", SECRET)

    assert path.endswith(f"/thumb-{sign('a/b.jpg', 'thumb', 'webp', SECRET)}.webp")
    assert accept(path)[1] == PRESETS["thumb"]


def test_an_unknown_preset_is_malformed() -> None:
    with pytest.raises(MalformedPathError) as refused:
        resolve_spec("banner", PRESETS)
    assert refused.value.status == 400


def test_a_path_signed_for_a_preset_that_is_no_longer_configured_is_malformed() -> None:
    path = format_path("a/b.jpg", "banner", "webp", SECRET)

    parsed = parse_path(path)
    verify(parsed, [SECRET])
    with pytest.raises(MalformedPathError):
        accept(path)


@pytest.mark.parametrize(
    ("text", "preset"),
    [
        pytest.param("thumb", True, id="word"),
        pytest.param("hero_2x", True, id="word with digits and underscore"),
        pytest.param("x400", False, id="height only"),
        pytest.param("x", False, id="bare x"),
        pytest.param("Thumb", False, id="capital letter"),
        pytest.param("_thumb", False, id="leading underscore"),
        pytest.param("2x", False, id="leading digit"),
        pytest.param("thumb-q80", False, id="with an option"),
        pytest.param("", False, id="empty"),
    ],
)
def test_which_spec_texts_name_a_preset(text: str, preset: bool) -> None:
    assert is_preset_name(text) is preset


def test_a_size_looking_name_is_a_size_even_when_configured_as_a_preset() -> None:
    presets = {"x400": DerivativeSpec(width=1)}

    assert resolve_spec("x400", presets) == DerivativeSpec(height=400)


# ----------------------------------------------------------------------------------------------------------------
# Signature shape and path structure

_SHAPE_KEY = "a/b.jpg"
_SHAPE_SIGNATURE = sign(_SHAPE_KEY, "400x300", "jpg", SECRET)


def _one_digit_upper_case(signature: str) -> str:
    index = next(index for index, digit in enumerate(signature) if digit in "abcdef")
    return signature[:index] + signature[index].upper() + signature[index + 1 :]


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="missing"),
        pytest.param(_SHAPE_SIGNATURE[:31], id="31 digits"),
        pytest.param(_SHAPE_SIGNATURE[:16], id="16 digits"),
        pytest.param(_SHAPE_SIGNATURE + "0", id="33 digits"),
        pytest.param(
            hmac.new(SECRET.encode(), f"{_SHAPE_KEY}/400x300.jpg".encode(), hashlib.sha256).hexdigest(),
            id="the full 64 digits",
        ),
        pytest.param("g" + _SHAPE_SIGNATURE[1:], id="non-hex digit"),
        pytest.param(" " + _SHAPE_SIGNATURE[1:], id="space"),
        pytest.param("0x" + _SHAPE_SIGNATURE[2:], id="0x prefix"),
        pytest.param(_SHAPE_SIGNATURE.upper(), id="upper-case"),
        pytest.param(_one_digit_upper_case(_SHAPE_SIGNATURE), id="one upper-case digit"),
        pytest.param("%" + _SHAPE_SIGNATURE[1:], id="percent"),
        pytest.param("fill", id="option where the signature belongs"),
    ],
)
def test_a_signature_of_the_wrong_shape_is_a_bad_signature(signature: str) -> None:
    with pytest.raises(BadSignatureError) as refused:
        parse_path(f"{PREFIX}{_SHAPE_KEY}/400x300-{signature}.jpg")
    assert refused.value.status == 403


def test_the_right_signature_in_the_right_shape_is_accepted() -> None:
    assert accept(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.jpg")[1] == DerivativeSpec(400, 300)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300.jpg", id="no dash"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300{_SHAPE_SIGNATURE}.jpg", id="no dash before the signature"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}", id="no dot"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.", id="empty format"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.jpeg", id="jpeg for jpg"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.JPG", id="upper-case format"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.tiff", id="unknown format"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.svg", id="svg"),
        pytest.param(f"{PREFIX}{_SHAPE_KEY}/-{_SHAPE_SIGNATURE}.jpg", id="no spec"),
        pytest.param(f"{PREFIX}400x300-{_SHAPE_SIGNATURE}.jpg", id="no key"),
        pytest.param(f"{PREFIX}/400x300-{_SHAPE_SIGNATURE}.jpg", id="empty key"),
        pytest.param(f"/media/{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.jpg", id="no derived prefix"),
        pytest.param(f"/_r/{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.jpg", id="no media url"),
        pytest.param(f"media/_r/{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.jpg", id="relative path"),
        pytest.param(f"http://host{PREFIX}{_SHAPE_KEY}/400x300-{_SHAPE_SIGNATURE}.jpg", id="absolute URL"),
        pytest.param(PREFIX, id="prefix alone"),
        pytest.param("/media/_r", id="prefix without its slash"),
        pytest.param("", id="empty path"),
    ],
)
def test_a_path_of_the_wrong_structure_is_malformed(path: str) -> None:
    with pytest.raises(MalformedPathError) as refused:
        parse_path(path)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("key", "spec", "fmt"),
    [
        pytest.param("a.jpg", DerivativeSpec(1, 1), "jpeg", id="unknown format"),
        pytest.param("a.jpg", DerivativeSpec(1, 1), "JPG", id="upper-case format"),
        pytest.param("a.jpg", "Thumb", "jpg", id="neither a preset name nor a spec"),
        pytest.param("a.jpg", "400x300-fit", "jpg", id="non-canonical spec text"),
    ],
)
def test_format_path_refuses_what_it_cannot_write_canonically(key: str, spec: DerivativeSpec | str, fmt: str) -> None:
    with pytest.raises(MalformedPathError):
        format_path(key, spec, fmt, SECRET)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"width": 0}, id="zero width"),
        pytest.param({"height": 100000}, id="six-digit height"),
        pytest.param({"width": 10, "mode": "fill"}, id="fill without a height"),
        pytest.param({"width": 10, "height": 10, "mode": "crop"}, id="unknown mode"),
        pytest.param({"width": 10, "gravity": "n"}, id="gravity without fill"),
        pytest.param({"width": 10, "height": 10, "mode": "fill", "gravity": "north"}, id="unknown gravity"),
        pytest.param({"quality": 0}, id="quality zero"),
        pytest.param({"blur": 101}, id="blur over 100"),
        pytest.param({"background": "FFFFFF"}, id="upper-case background"),
        pytest.param({"background": "#ffffff"}, id="background with a hash"),
    ],
)
def test_an_impossible_spec_cannot_be_built(fields: dict[str, object]) -> None:
    with pytest.raises(MalformedPathError):
        DerivativeSpec(**fields)  # type: ignore[arg-type]


def test_a_malformed_path_error_is_a_value_error() -> None:
    assert issubclass(MalformedPathError, ValueError)
    with pytest.raises(ValueError):
        parse_spec("not a spec")
    with pytest.raises(ValueError):
        parse_path("/elsewhere")


def test_a_bad_signature_is_403_and_a_malformed_path_is_400() -> None:
    assert (BadSignatureError.status, MalformedPathError.status) == (403, 400)
    assert not BadSignatureError.report and not MalformedPathError.report
