"""Settings: one declared list, each with its default and a one-line doc.

Sources, later wins: the defaults below < a YAML file (``--config FILE`` or ``RESIZE_SIDECAR_CONFIG``) <
environment variables ``RESIZE_SIDECAR_<NAME>``. Invalid settings raise :class:`SettingsError` with one line that
names the setting. Standard library only (PyYAML is imported when a file is read or written), so the middleware
can load settings without pulling in pyvips or boto3.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any, Literal, get_args

from resize_sidecar.core.errors import MalformedPathError, SettingsError
from resize_sidecar.core.signing import PRIVATE_DERIVED_PREFIX, DerivativeSpec, is_preset_name, parse_spec

ENV_PREFIX = "RESIZE_SIDECAR_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

StorageKind = Literal["local", "s3"]
OnMiss = Literal["serve", "redirect"]
NginxS3Auth = Literal["none", "sigv4"]


@dataclass(frozen=True)
class ImageLimits:
    """What one original may cost to read and decode, and one derivative to make: the settings the image work reads,
    taken from :class:`Settings` once (:attr:`Settings.image_limits`). Fields keep their settings' names, which
    refusals quote."""

    allowed_loaders: tuple[str, ...]
    max_source_bytes: int
    max_source_pixels: int
    max_frames: int
    max_output_dimension: int
    max_interlaced_pixels: int
    max_heif_pixels: int
    max_lossless_webp_pixels: int
    max_tiff_pixels: int
    max_bmp_pixels: int
    max_jpeg_scan_pixels: int
    transform_timeout: float
    #: A derivative's quality, per lossy format, when its spec names none.
    quality_jpg: int
    quality_webp: int
    quality_avif: int

    def quality_for(self, fmt: str) -> int:
        return {"jpg": self.quality_jpg, "webp": self.quality_webp, "avif": self.quality_avif}.get(fmt, 80)


def setting(default: Any, doc: str, *, secret: bool = False) -> Any:
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"doc": doc, "secret": secret})
    return field(default=default, metadata={"doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Every setting of the sidecar, the nginx renderer and the middleware."""

    storage: StorageKind = setting("local", "Where originals and derivatives live: 'local' (a folder) or 's3'.")
    local_root: str = setting("media", "Folder of originals and derivatives when storage is 'local'.")
    local_file_mode: str = setting("0644", "Octal mode of files written to local storage (nginx's workers read them).")
    local_dir_mode: str = setting("0755", "Octal mode of folders created in local storage.")
    s3_bucket: str = setting("", "S3 bucket of originals and derivatives when storage is 's3'.")
    s3_prefix: str = setting("", "Key prefix inside the bucket, e.g. 'media/' (empty: the bucket root).")
    s3_endpoint_url: str = setting("", "S3 endpoint for MinIO, R2, Ceph and the like (empty: AWS); path-style.")
    s3_region: str = setting("us-east-1", "S3 region.")
    s3_connect_timeout: float = setting(2.0, "Seconds to wait for a connection to S3.")
    s3_read_timeout: float = setting(5.0, "Seconds to wait for S3 to answer or send more bytes.")
    s3_max_attempts: int = setting(2, "Attempts per S3 call, the first included (botocore 'standard' retries).")
    secrets: tuple[str, ...] = setting((), "HMAC secrets, comma-separated; the first signs, all verify.", secret=True)
    media_url: str = setting("/media/", "Public URL path of media; starts and ends with '/'.")
    public_base_url: str = setting("", "Absolute base of public media URLs, e.g. a CDN 'https://cdn.example.com'.")
    on_miss: OnMiss = setting(
        "serve", "What the sidecar answers a miss with: 'serve' (200, the image) or 'redirect' (302 to its public URL)."
    )
    derived_prefix: str = setting("_r/", "Key prefix of derivatives; one path segment ending with '/'.")
    serve_originals: bool = setting(False, "Let nginx (and development serving) expose originals at MEDIA_URL.")
    nginx_s3_auth: NginxS3Auth = setting(
        "none", "How nginx reads S3: 'none' (anonymously; derivatives must be public) or 'sigv4'."
    )
    nginx_s3_credentials_file: str = setting(
        "", "With sigv4: JSON credentials file nginx reads per request (empty: AWS_* from nginx's environment)."
    )
    nginx_cache_size: str = setting("", "Size of nginx's cache of S3 hits, e.g. '2g' (empty: no cache).")
    nginx_cache_inactive: str = setting("7d", "nginx evicts cached hits not requested for this long.")
    nginx_cache_valid: str = setting(
        "10m", "nginx serves a cached hit this long, then checks it with S3: a deleted derivative stays served as long."
    )
    cache_control: str = setting("public, max-age=31536000, immutable", "Cache-Control of stored derivatives.")
    originals_cache_control: str = setting(
        "no-cache", "Cache-Control of originals stored by the API or 'resize-sidecar upload' (they can be replaced)."
    )
    quality_jpg: int = setting(80, "Default JPEG quality (1-100).")
    quality_webp: int = setting(80, "Default WebP quality (1-100).")
    quality_avif: int = setting(55, "Default AVIF quality (1-100).")
    presets: dict[str, str] = setting({}, "Named specs, 'name=spec' comma-separated, e.g. 'thumb=200x200-fill'.")
    max_source_bytes: int = setting(25_000_000, "Refuse originals larger than this many bytes.")
    max_source_pixels: int = setting(50_000_000, "Refuse originals with more pixels (width x height x frames).")
    max_frames: int = setting(100, "Animations with more frames are rendered from their first frame only.")
    max_output_dimension: int = setting(4096, "Refuse derivatives wider or taller than this many pixels.")
    max_interlaced_pixels: int = setting(
        60_000_000,
        "Refuse progressive JPEGs and interlaced PNGs with more pixels (decoded whole: about 4 MB a megapixel).",
    )
    max_heif_pixels: int = setting(
        16_000_000, "Refuse HEIF and AVIF originals with more pixels (decoded whole: about 16 MB a megapixel)."
    )
    max_lossless_webp_pixels: int = setting(
        50_000_000, "Refuse lossless WebP originals with more pixels (decoded whole: about 4 MB a megapixel)."
    )
    max_tiff_pixels: int = setting(
        32_000_000, "Refuse TIFF originals with more pixels (one strip or tile may hold them all: 7 MB a megapixel)."
    )
    max_bmp_pixels: int = setting(
        16_000_000, "Refuse BMP originals with more pixels (decoded whole by Pillow: about 13 MB a megapixel)."
    )
    max_jpeg_scan_pixels: int = setting(
        1_000_000_000, "Refuse JPEGs whose pixels times scans exceed this (each scan is a pass over the pixels)."
    )
    allowed_widths: tuple[str, ...] = setting(
        (),
        "Widths an explicit spec may ask for (presets may use any), comma-separated, e.g. '320,640,1280'; empty: any. "
        "When set, a spec without a width needs a height from this list, and full size (0x0) needs a preset.",
    )
    allowed_qualities: tuple[str, ...] = setting(
        (), "Qualities an explicit spec may ask for (q), comma-separated, e.g. '50,75,90'; empty: any."
    )
    allowed_blurs: tuple[str, ...] = setting(
        (), "Blur radii an explicit spec may ask for, comma-separated, e.g. '5,20'; empty: any."
    )
    rewrite_key_prefixes: tuple[str, ...] = setting(
        (), "Key prefixes whose originals the middleware's HTML rewriting may sign, e.g. 'photos/'; empty: any key."
    )
    transform_timeout: float = setting(
        10.0, "Seconds a transform (decode, steps, encode) may run before it is stopped and answered 503."
    )
    max_concurrent_transforms: int = setting(
        0, "Most transforms at once on this machine, across workers sharing LOCK_DIR (0: two per CPU)."
    )
    overload_wait: float = setting(
        2.0, "Seconds a miss waits for a free transform slot before it is answered 503 with Retry-After."
    )
    lock_dir: str = setting(
        "", "Folder of this machine's lock files, made 0700 (empty: resize-sidecar-locks-UID in the temp folder)."
    )
    allowed_loaders: tuple[str, ...] = setting(
        ("jpegload", "pngload", "webpload", "gifload", "heifload", "uhdrload", "tiffload", "bmpload"),
        "Loaders accepted for originals (libvips' names; bmpload is Pillow's BMP reader); others (SVG, PDF, "
        "ImageMagick...) are refused.",
    )
    api_secret: tuple[str, ...] = setting(
        (), "Bearer tokens of the media API under /api/, comma-separated, any one accepted; empty: no API.", secret=True
    )
    incoming_prefix: str = setting(
        "incoming/", "Key prefix of uploads until they are activated; one path segment ending with '/'."
    )
    upload_prefix: str = setting(
        "uploads/", "Key prefix of uploaded originals, before yyyy/mm/{random}.{ext}; empty or ending with '/'."
    )
    upload_custom_keys: bool = setting(False, "Let an upload choose its key with ?key= instead of a random one.")
    auto_orient_original: bool = setting(
        True, "Turn uploaded originals upright by their EXIF orientation (the tag is then removed)."
    )
    strip_original_gps: bool = setting(
        True, "Remove the GPS location from uploaded originals (XMP, IPTC and maker notes are always removed)."
    )
    temp_url_max_seconds: int = setting(
        3600, "Longest lifetime of a temporary URL to an original, in seconds (at most 604800)."
    )
    private_url_lifetime: int = setting(
        3600, "Default lifetime of a private derivative's URL, in seconds (at most 604800)."
    )
    archive_max_files: int = setting(50, "Most images in one zip from /api/archive.")
    archive_max_bytes: int = setting(200_000_000, "Most bytes of images in one zip from /api/archive.")

    @cached_property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(**{limit.name: getattr(self, limit.name) for limit in fields(ImageLimits)})

    @cached_property
    def preset_specs(self) -> dict[str, DerivativeSpec]:
        return {name: parse_spec(text) for name, text in self.presets.items()}

    @property
    def file_mode(self) -> int:
        return int(self.local_file_mode, 8)

    @property
    def dir_mode(self) -> int:
        return int(self.local_dir_mode, 8)

    @cached_property
    def widths(self) -> frozenset[int]:
        """``allowed_widths`` as numbers; empty when any width is allowed."""
        return frozenset(int(width) for width in self.allowed_widths)

    @cached_property
    def qualities(self) -> frozenset[int]:
        """``allowed_qualities`` as numbers; empty when any quality is allowed."""
        return frozenset(int(quality) for quality in self.allowed_qualities)

    @cached_property
    def blurs(self) -> frozenset[int]:
        """``allowed_blurs`` as numbers; empty when any blur radius is allowed."""
        return frozenset(int(blur) for blur in self.allowed_blurs)

    @property
    def transform_slots(self) -> int:
        """``max_concurrent_transforms``, with 0 resolved to two per CPU this process may run on.

        A slot also covers reading the original (a wait on S3) and the Python around libvips: with one per CPU,
        threaded workers left CPUs idle between transforms (bench/results/experiments.md, worker model).
        """
        if self.max_concurrent_transforms:
            return self.max_concurrent_transforms
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return 2 * cpus

    @property
    def lock_path(self) -> str:
        """``lock_dir``, with empty resolved to a folder of this user's in the system's temporary folder."""
        return self.lock_dir or os.path.join(tempfile.gettempdir(), f"resize-sidecar-locks-{os.getuid()}")

    @property
    def signed_storage_keys(self) -> bool:
        """Whether derivatives are stored at their signed public path rather than without the signature: in redirect
        mode, where an S3 website or a CDN serves storage keys as URLs and checks no signature."""
        return self.on_miss == "redirect"

    def require_secrets(self) -> tuple[str, ...]:
        """``secrets``, for what signs or verifies derivative URLs.

        Raises:
            SettingsError: no secret is set.
        """
        if not self.secrets:
            raise SettingsError(
                f"{_env_name('secrets')} (secrets): a secret is required to sign and verify derivative URLs"
            )
        return self.secrets

    def validate(self) -> Settings:
        """Check values that their types do not; returns self.

        Raises:
            SettingsError: naming the first invalid setting.
        """
        for name, problem in _problems(self):
            raise SettingsError(f"{_env_name(name)} ({name}): {problem}")
        return self


def _problems(s: Settings) -> list[tuple[str, str]]:
    problems = []

    def check(name: str, ok: bool, problem: str) -> None:
        if not ok:
            problems.append((name, problem))

    def check_choice(name: str, choices: object) -> None:
        allowed = get_args(choices)
        value = getattr(s, name)
        check(name, value in allowed, f"must be {' or '.join(map(repr, allowed))}, got {value!r}")

    check_choice("storage", StorageKind)
    check("s3_bucket", s.storage != "s3" or bool(s.s3_bucket), "is required when storage is 's3'")
    # The S3 names go into nginx's configuration and request paths as they are: only characters that need no quoting.
    check("s3_bucket", re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]{0,254})?", s.s3_bucket) is not None,
          "must be a bucket name: letters, digits, '.', '_', '-'")
    check("s3_prefix", re.fullmatch(r"((?!\.+/)[A-Za-z0-9_.~-]+/)*", s.s3_prefix) is not None,
          "must be empty or path segments of letters, digits, '_', '.', '~', '-' each followed by '/'")
    check("s3_region", re.fullmatch(r"[A-Za-z0-9_-]{1,64}", s.s3_region) is not None,
          "must be a region name such as eu-west-1: letters, digits, '_', '-'")
    check("s3_endpoint_url", not s.s3_endpoint_url or _is_endpoint(s.s3_endpoint_url),
          "must be an http(s) URL of a host and an optional port, e.g. http://127.0.0.1:9000")
    check(
        "media_url",
        re.fullmatch(r"/((?!\.+/)[A-Za-z0-9_.~-]+/)*", s.media_url) is not None,
        "must start and end with '/' and hold only letters, digits, '_', '.', '~', '-' between",
    )
    check(
        "derived_prefix",
        re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/", s.derived_prefix) is not None
        and s.derived_prefix != PRIVATE_DERIVED_PREFIX,
        f"must be one path segment of letters, digits, '_', '.', '-' followed by '/', other than "
        f"{PRIVATE_DERIVED_PREFIX!r} (private derivatives')",
    )
    check("public_base_url", s.public_base_url.startswith(("http://", "https://", "//")) or not s.public_base_url,
          "must be an absolute URL such as 'https://cdn.example.com'")
    check_choice("nginx_s3_auth", NginxS3Auth)
    check("nginx_cache_size", re.fullmatch(r"([0-9]+[kmgKMG]?)?", s.nginx_cache_size) is not None,
          "must be empty or an nginx size such as 512m or 2g")
    for name in ("nginx_cache_inactive", "nginx_cache_valid"):
        check(name, re.fullmatch(r"[0-9]+[smhdwMy]?", getattr(s, name)) is not None,
              "must be an nginx time such as 30s, 12h or 7d")
    check_choice("on_miss", OnMiss)
    check("public_base_url", s.on_miss != "redirect" or bool(s.public_base_url),
          "is required when ON_MISS is 'redirect' (the redirects point there)")
    for name in ("cache_control", "originals_cache_control"):
        check(name, "\n" not in getattr(s, name) and "\r" not in getattr(s, name), "must be one line")
    check("secrets", all(s.secrets), "must not contain an empty secret")
    for name in ("local_file_mode", "local_dir_mode"):
        check(name, re.fullmatch(r"0?[0-7]{3}", getattr(s, name)) is not None, "must be an octal mode such as 0644")
    for name in ("quality_jpg", "quality_webp", "quality_avif"):
        check(name, 1 <= getattr(s, name) <= 100, "must be between 1 and 100")
    for name in ("max_source_bytes", "max_source_pixels", "max_frames", "max_output_dimension", "s3_max_attempts"):
        check(name, getattr(s, name) > 0, "must be positive")
    for name in ("max_interlaced_pixels", "max_heif_pixels", "max_lossless_webp_pixels", "max_tiff_pixels",
                 "max_bmp_pixels", "max_jpeg_scan_pixels"):
        check(name, getattr(s, name) > 0, "must be positive")
    check("allowed_widths", all(re.fullmatch(r"[1-9][0-9]{0,4}", str(width)) for width in s.allowed_widths),
          "must be widths in pixels (1-99999), comma-separated")
    for name in ("allowed_qualities", "allowed_blurs"):
        check(name, all(re.fullmatch(r"[1-9][0-9]?|100", str(value)) for value in getattr(s, name)),
              "must be whole numbers from 1 to 100, comma-separated")
    check("rewrite_key_prefixes", all(not prefix.startswith("/") for prefix in s.rewrite_key_prefixes),
          "must be key prefixes such as 'photos/', without a leading '/'")
    # nginx gives up on the sidecar after 35 s (resize.conf): the deadline must leave room for the waits and storage.
    check("transform_timeout", 0 < s.transform_timeout <= 20, "must be more than 0 and at most 20 seconds")
    check("max_concurrent_transforms", s.max_concurrent_transforms >= 0, "must be 0 (two per CPU) or positive")
    check("overload_wait", 0 <= s.overload_wait <= 10, "must be between 0 and 10 seconds")
    check("lock_dir", not s.lock_dir or os.path.isabs(s.lock_dir), "must be an absolute path when set")
    for name in ("s3_connect_timeout", "s3_read_timeout"):
        check(name, getattr(s, name) > 0, "must be positive")
    for preset, text in s.presets.items():
        problem = f"preset name {preset!r} must match [a-z][a-z0-9_]* and not look like a size"
        check("presets", is_preset_name(preset), problem)
        try:
            spec = parse_spec(text)
        except MalformedPathError as error:
            problems.append(("presets", f"preset {preset!r}: {error.detail}"))
            continue
        largest = max(spec.width or 0, spec.height or 0)
        check("presets", largest <= s.max_output_dimension,
              f"preset {preset!r} is {largest} pixels, over max_output_dimension ({s.max_output_dimension})")
    check(
        "api_secret",
        all(re.fullmatch(r"[A-Za-z0-9._~+/=-]{16,}", token) for token in s.api_secret),
        "each token must be at least 16 letters, digits or '._~+/=-' (python -c 'import secrets; "
        "print(secrets.token_hex(32))')",
    )
    check(
        "incoming_prefix",
        re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*/", s.incoming_prefix) is not None
        and s.incoming_prefix != s.derived_prefix,
        "must be one path segment of letters, digits, '_', '.', '-' followed by '/', other than DERIVED_PREFIX",
    )
    check(
        "upload_prefix",
        re.fullmatch(r"([A-Za-z0-9_][A-Za-z0-9_.-]*/)*", s.upload_prefix) is not None
        and not s.upload_prefix.startswith((s.derived_prefix, s.incoming_prefix)),
        "must be empty or path segments of letters, digits, '_', '.', '-' each followed by '/', "
        "not under DERIVED_PREFIX or INCOMING_PREFIX",
    )
    check("temp_url_max_seconds", 1 <= s.temp_url_max_seconds <= 604800, "must be between 1 and 604800 (7 days)")
    check("private_url_lifetime", 1 <= s.private_url_lifetime <= 604800, "must be between 1 and 604800 (7 days)")
    for name in ("archive_max_files", "archive_max_bytes"):
        check(name, getattr(s, name) > 0, "must be positive")
    return problems


def _is_endpoint(url: str) -> bool:
    host = r"([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+|\[[0-9A-Fa-f:.]+\]"
    return re.fullmatch(rf"https?://({host})(:[0-9]{{1,5}})?/?", url) is not None


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Turn a YAML value or an environment string into the type of the setting's default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            if isinstance(value, bool | float) or not re.fullmatch(r"\s*-?[0-9_]+\s*", str(value)):
                raise ValueError("expected a whole number")
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool) or not re.fullmatch(r"\s*-?[0-9_.eE+-]+\s*", str(value)):
                raise ValueError("expected a number")
            return float(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, list | tuple):
                raise ValueError("expected a list or a comma-separated string")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if isinstance(default, dict):
            if isinstance(value, str):
                pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
                if any(len(pair) != 2 for pair in pairs):
                    raise ValueError("expected 'name=value' pairs separated by commas")
                return {k.strip(): v.strip() for k, v in pairs}
            if not isinstance(value, dict):
                raise ValueError("expected a mapping")
            return {str(k): str(v) for k, v in value.items()}
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("expected a string")
        if name in ("local_file_mode", "local_dir_mode") and not isinstance(value, str):
            # YAML reads an unquoted 0644 as the number 420: only a quoted mode is unambiguous.
            raise ValueError("expected a quoted octal string such as '0644'")
        return str(value)
    except ValueError as error:
        raise SettingsError(f"{_env_name(name)} ({name}): {error}, got {value!r}") from None


def load(config_path: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the defaults, then the YAML file, then the environment; validated.

    Raises:
        SettingsError: an unreadable file, an unknown or invalid setting.
    """
    environ = os.environ if environ is None else environ
    config_path = config_path or environ.get(CONFIG_ENV) or None
    defaults = Settings()
    declared = {f.name: getattr(defaults, f.name) for f in fields(Settings)}
    values: dict[str, Any] = {}
    if config_path:
        for name, value in _read_yaml(config_path).items():
            if name not in declared:
                raise SettingsError(f"{config_path}: unknown setting {name!r}")
            values[name] = _coerce(name, declared[name], value)
    for variable, value in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable == CONFIG_ENV:
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        if name not in declared:
            raise SettingsError(f"{variable}: unknown setting")
        values[name] = _coerce(name, declared[name], value)
    return replace(defaults, **values).validate()


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, "rb") as file:  # bytes: PyYAML reports bad UTF-8 as a YAMLError
            data = yaml.safe_load(file)
    except OSError as error:
        raise SettingsError(f"{path}: cannot read settings file: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    return data


def defaults_yaml() -> str:
    """Every setting with its doc and default, as YAML that :func:`load` reads back."""
    return settings_yaml(Settings())


def settings_yaml(settings: Settings) -> str:
    """Every setting with its doc and value as YAML; secret values are masked."""
    import yaml

    lines = []
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if f.metadata["secret"] and value:
            value = ["********"] * len(value)
        value = list(value) if isinstance(value, tuple) else value
        lines.append(f"# {f.metadata['doc']} (env {_env_name(f.name)})")
        lines.append(yaml.safe_dump({f.name: value}, default_flow_style=False, sort_keys=False).strip())
    return "\n".join(lines) + "\n"
