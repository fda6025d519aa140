"""The derivative URL contract: keys, specs, public paths and their signatures.

A derivative's public path is ``{media_url}{derived_prefix}{key}/{spec}-{sig}.{fmt}``, the key percent-encoded
(RFC 3986, ``/`` kept); its storage key is ``{derived_prefix}{key}/{spec}.{fmt}``, the key as it is and no signature,
so that a derivative stays where it is when the secrets change. The layout is written by
:meth:`DerivativePath.public_path` and :meth:`StoredDerivative.storage_key` and read by :func:`parse_path` and
:func:`parse_storage_key`, nowhere else. Where whatever serves storage cannot check a signature (redirect mode: an S3
website serves storage keys as URLs), the storage key is the public path's, signature included
(:meth:`DerivativePath.signed_storage_key`, read by :func:`parse_signed_storage_key`); so were all storage keys in the
layout before, which ``resize-sidecar migrate`` moves. Exactly one spelling of each derivative is accepted: the one
:func:`format_path` writes. Every other spelling (other percent-encodings, a spec with defaults spelled out or options
reordered) is refused, so a signature can never be moved onto another key and caches never fragment.

Standard library only: the middleware imports this module without pulling in pyvips or boto3.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args
from urllib.parse import quote, unquote_to_bytes

from resize_sidecar.core.errors import BadSignatureError, MalformedPathError
from resize_sidecar.core.formats import BY_NAME, FormatName

Mode = Literal["fit", "fill", "pad"]
# "sm": libvips' attention (smart) crop; "face": around the faces found in the original (attention without one).
Gravity = Literal["c", "n", "s", "e", "w", "ne", "nw", "se", "sw", "sm", "face"]
Rotation = Literal[0, 90, 180, 270]
Flip = Literal["x", "y"]
MODES: tuple[Mode, ...] = get_args(Mode)
GRAVITIES: tuple[Gravity, ...] = get_args(Gravity)
ROTATIONS: tuple[Rotation, ...] = get_args(Rotation)
#: Relative coordinates in the spec are per-mille of the upright original's width and height: whole numbers that
#: do not depend on the original's pixel size, so one spelling names one region of any original.
PER_MILLE = 1000
MAX_KEY_BYTES = 1024
SIGNATURE_LENGTH = 32

PRESET_NAME = re.compile(r"[a-z][a-z0-9_]*")
DIMENSIONS = re.compile(r"0x0|([1-9][0-9]{0,4})?x([1-9][0-9]{0,4})?")
_SIGNATURE = re.compile(f"[0-9a-f]{{{SIGNATURE_LENGTH}}}")
_NUMBERED = re.compile(r"(q|blur)([1-9][0-9]{0,2})")
_BACKGROUND = re.compile(r"bg([0-9a-f]{6})")
_PER_MILLE = "(0|[1-9][0-9]{0,3})"
_FOCAL = re.compile(rf"fp{_PER_MILLE}\.{_PER_MILLE}")
_CROP = re.compile(rf"crop{_PER_MILLE}\.{_PER_MILLE}\.{_PER_MILLE}\.{_PER_MILLE}")
_ROTATE = re.compile(r"r(90|180|270)")
_FLIP = re.compile(r"flip([xy])")
# Rotation and flip together are one of the eight turns of a rectangle; each has one spelling. The other
# combinations are refused with the spelling of the same turn.
_SAME_TURN: dict[tuple[int, str | None], str] = {
    (180, "x"): "flipy",
    (180, "y"): "flipx",
    (90, "y"): "r270-flipx",
    (270, "y"): "r90-flipx",
}
# C0 controls, DEL and C1 controls: never part of a key (they break logs, headers and file systems).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class DerivativeSpec:
    """What to make of an original. ``width`` and ``height`` both ``None`` means full size (``0x0``)."""

    width: int | None = None
    height: int | None = None
    mode: Mode = "fit"
    gravity: Gravity = "c"
    quality: int | None = None
    upscale: bool = False
    background: str | None = None
    blur: int | None = None
    sharpen: bool = False
    #: The point of the upright original a ``fill`` crop centres on, as far as the box allows: (x, y) per-mille.
    focal: tuple[int, int] | None = None
    #: The region of the upright original the derivative is made of, before anything else: (x, y, w, h) per-mille.
    crop: tuple[int, int, int, int] | None = None
    #: Degrees clockwise, after the crop; then ``flip`` mirrors the turned picture left-right ("x") or top-bottom.
    rotate: Rotation = 0
    flip: Flip | None = None

    def __post_init__(self) -> None:
        for side in (self.width, self.height):
            if side is not None and not 1 <= side <= 99999:
                raise MalformedPathError(f"dimensions must be 1..99999 pixels, got {side}")
        if self.mode not in MODES:
            raise MalformedPathError(f"unknown mode {self.mode!r}")
        if self.mode != "fit" and (self.width is None or self.height is None):
            raise MalformedPathError(f"mode {self.mode} needs both a width and a height")
        if self.gravity not in GRAVITIES:
            raise MalformedPathError(f"unknown gravity {self.gravity!r}")
        if self.gravity != "c" and self.mode != "fill":
            raise MalformedPathError("gravity applies to mode fill only")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise MalformedPathError(f"quality must be 1..100, got {self.quality}")
        if self.blur is not None and not 1 <= self.blur <= 100:
            raise MalformedPathError(f"blur must be 1..100, got {self.blur}")
        if self.background is not None and not _BACKGROUND.fullmatch("bg" + self.background):
            raise MalformedPathError(f"background must be six lower-case hex digits, got {self.background!r}")
        self._check_geometry()

    def _check_geometry(self) -> None:
        if self.focal is not None:
            if self.mode != "fill":
                raise MalformedPathError("a focal point applies to mode fill only")
            if self.gravity != "c":
                raise MalformedPathError("a spec has a gravity or a focal point, not both")
            if len(self.focal) != 2 or not all(0 <= value <= PER_MILLE for value in self.focal):
                raise MalformedPathError(f"a focal point is two per-mille values 0..1000, got {self.focal}")
            if self.focal == (PER_MILLE // 2, PER_MILLE // 2):
                raise MalformedPathError("the focal point fp500.500 is the centre, the default: leave it out")
        if self.crop is not None:
            if len(self.crop) != 4 or not all(0 <= value <= PER_MILLE for value in self.crop):
                raise MalformedPathError(f"a crop is four per-mille values 0..1000, got {self.crop}")
            x, y, width, height = self.crop
            if width < 1 or height < 1 or x + width > PER_MILLE or y + height > PER_MILLE:
                raise MalformedPathError("a crop's width and height are at least 1 and it ends inside the picture")
            if self.crop == (0, 0, PER_MILLE, PER_MILLE):
                raise MalformedPathError("the crop crop0.0.1000.1000 is the whole picture, the default: leave it out")
        if self.rotate not in ROTATIONS:
            raise MalformedPathError(f"rotate must be one of 0, 90, 180, 270 degrees, got {self.rotate!r}")
        if self.flip not in (None, "x", "y"):
            raise MalformedPathError(f"flip must be 'x' or 'y', got {self.flip!r}")
        same = _SAME_TURN.get((self.rotate, self.flip))
        if same is not None:
            raise MalformedPathError(f"r{self.rotate}-flip{self.flip} is the same turn as {same}: write that")

    @property
    def full_size(self) -> bool:
        return self.width is None and self.height is None


@dataclass(frozen=True)
class DerivativePath:
    """A derivative path split into its parts; ``spec`` is the text in the URL (a preset name or a spec)."""

    key: str
    spec: str
    fmt: FormatName
    signature: str

    @property
    def name(self) -> str:
        """The derivative's file name, ``{spec}-{signature}.{format}``."""
        return derivative_name(self.spec, self.signature, self.fmt)

    @property
    def stored(self) -> StoredDerivative:
        """The derivative it names, as storage knows it: without the signature."""
        return StoredDerivative(self.key, self.spec, self.fmt)

    def storage_key(self, derived_prefix: str) -> str:
        """Where the derivative is stored: ``{derived_prefix}{key}/{spec}.{fmt}``."""
        return self.stored.storage_key(derived_prefix)

    def signed_storage_key(self, derived_prefix: str) -> str:
        """Where it is stored when storage keys carry the signature (redirect mode, and every store before the
        signature left them): ``{derived_prefix}{key}/{spec}-{signature}.{fmt}``, its public path's."""
        return derivatives_prefix(self.key, derived_prefix) + self.name

    def public_path(self, media_url: str, derived_prefix: str) -> str:
        """The path it is requested at: its storage key, percent-encoded, under ``media_url``."""
        return media_url + derivatives_prefix(encode_key(self.key), derived_prefix) + self.name


@dataclass(frozen=True)
class StoredDerivative:
    """A derivative as it is stored: its original's key, the text of its spec and its format. The signature that
    asked for it is no part of it, so any validly signed URL of the same key, spec and format names the same object,
    whichever secret signed it."""

    key: str
    spec: str
    fmt: FormatName

    def storage_key(self, derived_prefix: str) -> str:
        """Where it is stored: ``{derived_prefix}{key}/{spec}.{fmt}``."""
        return derivatives_prefix(self.key, derived_prefix) + f"{self.spec}.{self.fmt}"


#: Storage keys under this folder are resize-sidecar's own bookkeeping (the upload manifest, readiness's write probe):
#: no original's key starts with it, so nothing reaches them through a URL or the API, and nginx never serves them.
PRIVATE_PREFIX = ".resize-sidecar/"
#: Private derivatives (:mod:`resize_sidecar.core.private`) are stored, and requested, under this prefix. It is fixed
#: rather than a setting because every check of a key refuses it, as it refuses the derived prefix.
PRIVATE_DERIVED_PREFIX = "_p/"
#: Names that storage keeps for itself beside objects (local storage's temporary and metadata files): no segment of a
#: key may start with it, so no key names one, whichever storage is configured.
STORAGE_NAME_PREFIX = ".resize-sidecar-"


def derivatives_prefix(key: str, derived_prefix: str) -> str:
    """The storage prefix of the original ``key``'s derivatives. They are the keys directly under it: those below a
    further ``/`` belong to the originals whose keys start with ``{key}/``."""
    return f"{derived_prefix}{key}/"


def derivative_name(spec: str, signature: str, fmt: str) -> str:
    """A derivative's file name: the last segment of its path and of its storage key."""
    return f"{spec}-{signature}.{fmt}"


def validate_key(key: str, derived_prefix: str) -> None:
    """Refuse keys that could escape storage, collide with derivatives or private objects, or break a file system.

    Raises:
        MalformedPathError: with the rule the key breaks.
    """
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedPathError("key is not valid UTF-8") from None
    if not key:
        raise MalformedPathError("key is empty")
    if size > MAX_KEY_BYTES:
        raise MalformedPathError(f"key is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key) or "\\" in key:
        raise MalformedPathError("key contains a control character or a backslash")
    segments = key.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise MalformedPathError("key has an empty, '.' or '..' segment")
    if segments[0] == derived_prefix.rstrip("/"):
        raise MalformedPathError(f"key starts with the derived prefix {derived_prefix!r}")
    if segments[0] == PRIVATE_PREFIX.rstrip("/"):
        raise MalformedPathError(f"keys under {PRIVATE_PREFIX!r} are resize-sidecar's own")
    if segments[0] == PRIVATE_DERIVED_PREFIX.rstrip("/"):
        raise MalformedPathError(f"key starts with the private derivatives' prefix {PRIVATE_DERIVED_PREFIX!r}")
    if any(segment.startswith(STORAGE_NAME_PREFIX) for segment in segments):
        raise MalformedPathError(f"a key's names may not start with {STORAGE_NAME_PREFIX!r}, which storage keeps")


def parse_spec(text: str) -> DerivativeSpec:
    """Parse an explicit spec (``400x300-fill-sm-q70``, ``256x256-fill-fp420.300-crop100.0.600.900-r90``); only its
    canonical spelling is accepted.

    Raises:
        MalformedPathError: the text is not a spec, or not written canonically.
    """
    dimensions, *tokens = text.split("-")
    match = DIMENSIONS.fullmatch(dimensions)
    if match is None:
        raise MalformedPathError(f"bad dimensions {dimensions!r}")
    width, height = (int(side) if side else None for side in match.groups())
    options: dict[str, object] = {}
    for token in tokens:
        name, value = _read_token(token)
        if name == "flip" and name in options:
            raise MalformedPathError("flipx-flipy is the same turn as r180: write that")
        if name in options:
            raise MalformedPathError(f"option {name} given twice")
        options[name] = value
    spec = DerivativeSpec(width=width, height=height, **options)  # type: ignore[arg-type]
    if format_spec(spec) != text:
        raise MalformedPathError(f"spec {text!r} is not canonical; write it as {format_spec(spec)!r}")
    return spec


def _read_token(token: str) -> tuple[str, object]:
    if token in MODES:
        return "mode", token
    if token in GRAVITIES:
        return "gravity", token
    if token == "up":
        return "upscale", True
    if token == "sharp":
        return "sharpen", True
    if numbered := _NUMBERED.fullmatch(token):
        return ("quality" if numbered[1] == "q" else "blur"), int(numbered[2])
    if background := _BACKGROUND.fullmatch(token):
        return "background", background[1]
    if focal := _FOCAL.fullmatch(token):
        return "focal", (int(focal[1]), int(focal[2]))
    if crop := _CROP.fullmatch(token):
        return "crop", tuple(int(value) for value in crop.groups())
    if rotate := _ROTATE.fullmatch(token):
        return "rotate", int(rotate[1])
    if flip := _FLIP.fullmatch(token):
        return "flip", flip[1]
    raise MalformedPathError(f"unknown option {token!r}")


def format_spec(spec: DerivativeSpec) -> str:
    """The canonical text of a spec: options in a fixed order, defaults omitted."""
    parts = ["0x0"] if spec.full_size else [f"{spec.width or ''}x{spec.height or ''}"]
    if spec.mode != "fit":
        parts.append(spec.mode)
    if spec.gravity != "c":
        parts.append(spec.gravity)
    if spec.focal is not None:
        parts.append("fp{}.{}".format(*spec.focal))
    if spec.crop is not None:
        parts.append("crop{}.{}.{}.{}".format(*spec.crop))
    if spec.rotate:
        parts.append(f"r{spec.rotate}")
    if spec.flip is not None:
        parts.append(f"flip{spec.flip}")
    if spec.quality is not None:
        parts.append(f"q{spec.quality}")
    if spec.upscale:
        parts.append("up")
    if spec.background is not None:
        parts.append(f"bg{spec.background}")
    if spec.blur is not None:
        parts.append(f"blur{spec.blur}")
    if spec.sharpen:
        parts.append("sharp")
    return "-".join(parts)


def _split_name(name: str) -> tuple[str, str, FormatName]:
    """A derivative's file name split into its spec text, signature and format; the spec is not parsed.

    Raises:
        MalformedPathError: not shaped ``{spec}-{signature}.{format}``, or an unknown format.
        BadSignatureError: the signature is not 32 lower-case hex digits.
    """
    rest, dot, fmt = name.rpartition(".")
    spec, dash, signature = rest.rpartition("-")
    if not (dot and dash and spec):
        raise MalformedPathError("expected {key}/{spec}-{signature}.{format}")
    output = _output_format(fmt)
    if not _SIGNATURE.fullmatch(signature):
        raise BadSignatureError("signature is not 32 lower-case hex digits")
    return spec, signature, output


def _output_format(text: str) -> FormatName:
    """Raises: MalformedPathError: ``text`` names no output format."""
    found = BY_NAME.get(text)
    if found is None:
        raise MalformedPathError(f"unknown format {text!r}")
    return found.name


def is_preset_name(text: str) -> bool:
    # Anything shaped like a size ("x0", "x300") is a (perhaps malformed) size, never a preset.
    return PRESET_NAME.fullmatch(text) is not None and re.fullmatch(r"[0-9]*x[0-9]*", text) is None


def resolve_spec(text: str, presets: Mapping[str, DerivativeSpec]) -> DerivativeSpec:
    """The spec a URL's spec text stands for: a preset's, or the explicit spec itself.

    Raises:
        MalformedPathError: unknown preset, or a malformed or non-canonical spec.
    """
    if is_preset_name(text):
        try:
            return presets[text]
        except KeyError:
            raise MalformedPathError(f"unknown preset {text!r}") from None
    return parse_spec(text)


def sign(key: str, spec: str, fmt: str, secret: str) -> str:
    """The signature of a derivative: the first 32 hex digits of HMAC-SHA256(secret, "{key}/{spec}.{fmt}")."""
    mac = _keyed(secret).copy()
    mac.update(f"{key}/{spec}.{fmt}".encode())
    return mac.hexdigest()[:SIGNATURE_LENGTH]


@lru_cache(maxsize=16)
def _keyed(secret: str) -> hmac.HMAC:
    # Copying an HMAC that already holds the key skips hashing the key twice per URL: pages sign hundreds.
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def verify(path: DerivativePath, secrets: Iterable[str], *, signed_format: str | None = None) -> None:
    """Accept a path signed with any of the secrets (the first signs; the others are kept for rotation).

    ``signed_format`` is the format the signature covers when it is not the path's own: ``auto`` for the concrete
    path an ``.auto`` URL stands for.

    Raises:
        BadSignatureError: no secret gives this signature.
    """
    expected = path.signature.encode()
    fmt = signed_format or path.fmt
    valid = False
    for secret in secrets:
        # Every secret is tried, so the time taken does not depend on which one matched.
        valid |= hmac.compare_digest(sign(path.key, path.spec, fmt, secret).encode(), expected)
    if not valid:
        raise BadSignatureError("signature does not match")


def encode_key(key: str) -> str:
    """The key as it stands in a URL path: percent-encoded UTF-8, ``/`` kept, upper-case hex."""
    return quote(key, safe="/")


def format_path(
    key: str,
    spec: DerivativeSpec | str,
    fmt: str,
    secret: str,
    *,
    media_url: str = "/media/",
    derived_prefix: str = "_r/",
) -> str:
    """The signed public path of a derivative; ``spec`` is a :class:`DerivativeSpec` or a preset name.

    Raises:
        MalformedPathError: invalid key, spec or format.
    """
    validate_key(key, derived_prefix)
    output = _output_format(fmt)
    if isinstance(spec, DerivativeSpec):
        spec_text = format_spec(spec)
    elif is_preset_name(spec):
        spec_text = spec
    else:
        spec_text = format_spec(parse_spec(spec))
    path = DerivativePath(key=key, spec=spec_text, fmt=output, signature=sign(key, spec_text, output, secret))
    return path.public_path(media_url, derived_prefix)


def parse_path(raw_path: str, *, media_url: str = "/media/", derived_prefix: str = "_r/") -> DerivativePath:
    """Split a raw (still percent-encoded) request path into a :class:`DerivativePath`; does not verify it.

    Raises:
        MalformedPathError: not a derivative path, or not in its one canonical spelling.
        BadSignatureError: the signature is missing or not 32 lower-case hex digits.
    """
    prefix = media_url + derived_prefix
    if not raw_path.startswith(prefix):
        raise MalformedPathError(f"path does not start with {prefix!r}")
    encoded_key, slash, filename = raw_path[len(prefix) :].rpartition("/")
    if not slash:
        raise MalformedPathError("expected {key}/{spec}-{signature}.{format}")
    spec, signature, fmt = _split_name(filename)
    if not raw_path[len(prefix) :].isascii():
        raise MalformedPathError("path is not percent-encoded ASCII")
    try:
        key = unquote_to_bytes(encoded_key).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPathError("key is not valid UTF-8") from None
    validate_key(key, derived_prefix)
    if encode_key(key) != encoded_key:
        raise MalformedPathError("key is not percent-encoded canonically")
    return DerivativePath(key=key, spec=spec, fmt=fmt, signature=signature)


def parse_storage_key(storage_key: str, derived_prefix: str) -> StoredDerivative:
    """Split a derivative's storage key (``{derived_prefix}{key}/{spec}.{fmt}``) into a :class:`StoredDerivative`:
    the inverse of :meth:`StoredDerivative.storage_key`. The spec text is a preset's name or a canonical spec; it is
    not resolved against the presets.

    Raises:
        MalformedPathError: not a derivative's storage key (one in the layout before included).
    """
    key, name = _split_storage_key(storage_key, derived_prefix, "expected {key}/{spec}.{format}")
    spec, dot, fmt = name.rpartition(".")
    if not (dot and spec):
        raise MalformedPathError("expected {key}/{spec}.{format}")
    if not is_preset_name(spec):
        parse_spec(spec)
    return StoredDerivative(key=key, spec=spec, fmt=_output_format(fmt))


def parse_signed_storage_key(storage_key: str, derived_prefix: str) -> DerivativePath:
    """Split a storage key with the signature in it (``{derived_prefix}{key}/{spec}-{sig}.{fmt}``) into the
    :class:`DerivativePath` it was stored for: the inverse of :meth:`DerivativePath.signed_storage_key`. Neither
    verified nor parsed further.

    Raises:
        MalformedPathError: not a signed storage key (a signature of the wrong shape included).
    """
    key, name = _split_storage_key(storage_key, derived_prefix, "expected {key}/{spec}-{signature}.{format}")
    try:
        spec, signature, fmt = _split_name(name)
    except BadSignatureError as error:
        raise MalformedPathError(error.detail) from None
    return DerivativePath(key=key, spec=spec, fmt=fmt, signature=signature)


def _split_storage_key(storage_key: str, derived_prefix: str, shape: str) -> tuple[str, str]:
    """A derivative's storage key split into its original's key (validated) and its file name."""
    if not storage_key.startswith(derived_prefix):
        raise MalformedPathError(f"storage key does not start with {derived_prefix!r}")
    key, slash, name = storage_key[len(derived_prefix) :].rpartition("/")
    if not slash:
        raise MalformedPathError(shape)
    validate_key(key, derived_prefix)
    return key, name
