"""Settings (resize_sidecar.core.settings): defaults < YAML file < environment, one clear line per invalid setting."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from resize_sidecar.core.errors import SettingsError
from resize_sidecar.core.settings import CONFIG_ENV, ENV_PREFIX, ImageLimits, Settings, defaults_yaml, load
from resize_sidecar.core.signing import DerivativeSpec

FIELDS = [f.name for f in fields(Settings)]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def env(**values: str) -> dict[str, str]:
    return {env_name(name): value for name, value in values.items()}


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[[str | bytes], str]:
    """Write a settings file and return its path."""

    def write(content: str | bytes) -> str:
        path = tmp_path / "resize-sidecar.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    return write


def assert_one_line(message: str) -> None:
    assert message
    assert "\n" not in message and "\r" not in message
    assert "Traceback" not in message


def assert_names_setting(error: SettingsError, variable: str) -> None:
    """One line, and the only environment variable it names is the bad setting's."""
    message = str(error)
    assert_one_line(message)
    assert re.findall(r"RESIZE_SIDECAR_[A-Z0-9_]+", message) == [variable]


# ----------------------------------------------------------------------------------------------------------------
# Sources and precedence


def test_without_a_file_or_environment_every_setting_is_its_default() -> None:
    assert load(environ={}) == Settings()
    assert Settings().validate() == Settings()


def test_variables_outside_the_prefix_are_ignored() -> None:
    environ = {"PATH": "/usr/bin", "HOME": "/root", "RESIZE_SIDECARS": "x", "resize_sidecar_storage": "s3"}

    assert load(environ=environ) == Settings()


def test_the_file_overrides_the_defaults_and_the_environment_overrides_the_file(
    config_file: Callable[[str], str],
) -> None:
    path = config_file(
        "storage: s3\ns3_bucket: bucket-from-file\ns3_prefix: media/\nquality_jpg: 70\nmedia_url: /img/\n"
    )
    environ = env(quality_jpg="60", s3_region="eu-west-1", s3_prefix="")

    settings = load(path, environ)

    assert (settings.storage, settings.s3_bucket, settings.media_url) == ("s3", "bucket-from-file", "/img/")
    assert (settings.quality_jpg, settings.s3_region) == (60, "eu-west-1")
    assert settings.s3_prefix == ""  # an empty variable still overrides the file
    assert (settings.quality_webp, settings.derived_prefix) == (80, "_r/")  # neither file nor environment


def test_the_config_variable_names_the_file(config_file: Callable[[str], str]) -> None:
    path = config_file("quality_avif: 40\nmax_frames: 3\n")

    settings = load(environ={CONFIG_ENV: path, **env(max_frames="5")})

    assert (settings.quality_avif, settings.max_frames) == (40, 5)


def test_an_explicit_file_wins_over_the_config_variable(config_file: Callable[[str], str], tmp_path: Path) -> None:
    path = config_file("quality_avif: 40\n")

    settings = load(path, {CONFIG_ENV: str(tmp_path / "missing.yaml")})

    assert settings.quality_avif == 40


def test_an_empty_config_variable_means_no_file() -> None:
    assert load(environ={CONFIG_ENV: ""}) == Settings()


def test_an_empty_file_means_the_defaults(config_file: Callable[[str], str]) -> None:
    assert load(config_file(""), {}) == Settings()
    assert load(config_file("# nothing set\n"), {}) == Settings()


# ----------------------------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        *(
            pytest.param("serve_originals", text, True, id=f"bool {text!r}")
            for text in ("1", "true", "True", "TRUE", "yes", "on", " yes ")
        ),
        *(
            pytest.param("serve_originals", text, False, id=f"bool {text!r}")
            for text in ("0", "false", "False", "no", "off", "Off")
        ),
        pytest.param("max_frames", "7", 7, id="int"),
        pytest.param("max_frames", " 7 ", 7, id="int with spaces"),
        pytest.param("max_source_bytes", "25_000_000", 25_000_000, id="int with underscores"),
        pytest.param("quality_jpg", "100", 100, id="int at the top of its range"),
        pytest.param("s3_connect_timeout", "2", 2.0, id="float from a whole number"),
        pytest.param("s3_connect_timeout", "0.5", 0.5, id="float"),
        pytest.param("s3_read_timeout", "1e1", 10.0, id="float with exponent"),
        pytest.param("secrets", "new,old", ("new", "old"), id="tuple"),
        pytest.param("secrets", " new , old ,", ("new", "old"), id="tuple with spaces and a trailing comma"),
        pytest.param("secrets", "only", ("only",), id="tuple of one"),
        pytest.param("secrets", "", (), id="empty tuple"),
        pytest.param("allowed_loaders", "jpegload, pngload", ("jpegload", "pngload"), id="tuple of loaders"),
        pytest.param(
            "presets", "thumb=200x200-fill, wide=800x", {"thumb": "200x200-fill", "wide": "800x"}, id="presets"
        ),
        pytest.param("presets", "thumb=200x200-fill", {"thumb": "200x200-fill"}, id="one preset"),
        pytest.param("presets", "", {}, id="no presets"),
        pytest.param("s3_bucket", "my-bucket", "my-bucket", id="string"),
        pytest.param("local_file_mode", "0640", "0640", id="octal mode"),
        pytest.param("local_dir_mode", "750", "750", id="octal mode without the leading zero"),
        pytest.param("media_url", "/static/img/", "/static/img/", id="media url"),
        pytest.param("derived_prefix", "derived/", "derived/", id="derived prefix"),
    ],
)
def test_every_type_coerces_from_the_environment(name: str, text: str, value: Any) -> None:
    settings = load(environ=env(**{name: text}))

    assert getattr(settings, name) == value
    assert type(getattr(settings, name)) is type(getattr(Settings(), name))


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        pytest.param("serve_originals: yes", "serve_originals", True, id="bool, YAML 1.1 yes"),
        pytest.param("serve_originals: false", "serve_originals", False, id="bool"),
        pytest.param("serve_originals: 'on'", "serve_originals", True, id="bool from a string"),
        pytest.param("serve_originals: 1", "serve_originals", True, id="bool from 1"),
        pytest.param("max_frames: 7", "max_frames", 7, id="int"),
        pytest.param("max_frames: '7'", "max_frames", 7, id="int from a string"),
        pytest.param("max_source_bytes: 25_000_000", "max_source_bytes", 25_000_000, id="int with underscores"),
        pytest.param("s3_connect_timeout: 3", "s3_connect_timeout", 3.0, id="float from an int"),
        pytest.param("s3_connect_timeout: 0.5", "s3_connect_timeout", 0.5, id="float"),
        pytest.param("secrets: [new, old]", "secrets", ("new", "old"), id="tuple from a list"),
        pytest.param("secrets: new,old", "secrets", ("new", "old"), id="tuple from a comma string"),
        pytest.param("secrets: []", "secrets", (), id="empty tuple"),
        pytest.param(
            "allowed_loaders:\n- jpegload\n- pngload",
            "allowed_loaders",
            ("jpegload", "pngload"),
            id="tuple from a block list",
        ),
        pytest.param(
            "presets: {thumb: 200x200-fill, wide: 800x}",
            "presets",
            {"thumb": "200x200-fill", "wide": "800x"},
            id="presets from a mapping",
        ),
        pytest.param("presets: thumb=200x200-fill", "presets", {"thumb": "200x200-fill"}, id="presets from a string"),
        pytest.param("presets: {}", "presets", {}, id="no presets"),
        pytest.param("s3_bucket: my-bucket", "s3_bucket", "my-bucket", id="string"),
        pytest.param("s3_bucket: 2024", "s3_bucket", "2024", id="string from a number"),
        pytest.param("local_file_mode: '0640'", "local_file_mode", "0640", id="quoted octal mode"),
    ],
)
def test_every_type_coerces_from_the_file(config_file: Callable[[str], str], text: str, name: str, value: Any) -> None:
    settings = load(config_file(text + "\n"), {})

    assert getattr(settings, name) == value
    assert type(getattr(settings, name)) is type(getattr(Settings(), name))


def _environment_spelling(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, dict):
        return ",".join(f"{name}={spec}" for name, spec in value.items())
    return str(value)


def test_every_setting_can_be_given_in_the_environment() -> None:
    defaults = Settings()
    environ = {env_name(name): _environment_spelling(getattr(defaults, name)) for name in FIELDS}

    assert load(environ=environ) == defaults


def test_presets_from_the_environment_become_specs() -> None:
    settings = load(environ=env(presets="thumb=200x200-fill-sm,hero_2x=1600x"))

    assert settings.preset_specs == {
        "thumb": DerivativeSpec(200, 200, "fill", "sm"),
        "hero_2x": DerivativeSpec(width=1600),
    }


def test_modes_are_read_as_octal() -> None:
    settings = load(environ=env(local_file_mode="0640", local_dir_mode="750"))

    assert (settings.file_mode, settings.dir_mode) == (0o640, 0o750)
    assert (Settings().file_mode, Settings().dir_mode) == (0o644, 0o755)


# ----------------------------------------------------------------------------------------------------------------
# Invalid settings: one line naming the setting

BAD_ENVIRONMENTS = [
    pytest.param(env(storage="ftp"), "STORAGE", id="unknown storage"),
    pytest.param(env(storage="S3", s3_bucket="b"), "STORAGE", id="storage in capitals"),
    pytest.param(env(storage=""), "STORAGE", id="empty storage"),
    pytest.param(env(storage="s3"), "S3_BUCKET", id="s3 without a bucket"),
    pytest.param(env(storage="s3", s3_bucket=""), "S3_BUCKET", id="s3 with an empty bucket"),
    pytest.param(env(s3_prefix="media"), "S3_PREFIX", id="s3 prefix without a slash"),
    pytest.param(env(s3_endpoint_url="localhost:9000"), "S3_ENDPOINT_URL", id="endpoint without a scheme"),
    pytest.param(env(s3_endpoint_url="ftp://minio:9000"), "S3_ENDPOINT_URL", id="endpoint not http"),
    pytest.param(env(media_url="media/"), "MEDIA_URL", id="media url without a leading slash"),
    pytest.param(env(media_url="/media"), "MEDIA_URL", id="media url without a trailing slash"),
    pytest.param(env(media_url="media"), "MEDIA_URL", id="media url without slashes"),
    pytest.param(env(media_url=""), "MEDIA_URL", id="empty media url"),
    pytest.param(env(media_url="/my media/"), "MEDIA_URL", id="media url with a space"),
    pytest.param(env(derived_prefix="_r/x/"), "DERIVED_PREFIX", id="derived prefix of two segments"),
    pytest.param(env(derived_prefix="_r"), "DERIVED_PREFIX", id="derived prefix without a slash"),
    pytest.param(env(derived_prefix="/_r/"), "DERIVED_PREFIX", id="derived prefix with a leading slash"),
    pytest.param(env(derived_prefix="../"), "DERIVED_PREFIX", id="derived prefix dot-dot"),
    pytest.param(env(derived_prefix=""), "DERIVED_PREFIX", id="empty derived prefix"),
    pytest.param(env(public_base_url="cdn.example.com"), "PUBLIC_BASE_URL", id="public base url without a scheme"),
    pytest.param(env(cache_control="public\r\nX-Injected: 1"), "CACHE_CONTROL", id="cache control of two lines"),
    pytest.param(env(quality_jpg="0"), "QUALITY_JPG", id="quality 0"),
    pytest.param(env(quality_jpg="101"), "QUALITY_JPG", id="quality 101"),
    pytest.param(env(quality_webp="0"), "QUALITY_WEBP", id="webp quality 0"),
    pytest.param(env(quality_avif="101"), "QUALITY_AVIF", id="avif quality 101"),
    pytest.param(env(quality_jpg="-5"), "QUALITY_JPG", id="negative quality"),
    pytest.param(env(quality_jpg="high"), "QUALITY_JPG", id="quality not a number"),
    pytest.param(env(quality_jpg="80.5"), "QUALITY_JPG", id="quality not whole"),
    pytest.param(env(max_source_bytes="-1"), "MAX_SOURCE_BYTES", id="negative byte limit"),
    pytest.param(env(max_source_bytes="0"), "MAX_SOURCE_BYTES", id="zero byte limit"),
    pytest.param(env(max_source_pixels="-50000000"), "MAX_SOURCE_PIXELS", id="negative pixel limit"),
    pytest.param(env(max_frames="-1"), "MAX_FRAMES", id="negative frame limit"),
    pytest.param(env(max_frames=""), "MAX_FRAMES", id="empty frame limit"),
    pytest.param(env(max_frames="1e3"), "MAX_FRAMES", id="frame limit with exponent"),
    pytest.param(env(max_output_dimension="0"), "MAX_OUTPUT_DIMENSION", id="zero output dimension"),
    pytest.param(env(s3_max_attempts="0"), "S3_MAX_ATTEMPTS", id="zero attempts"),
    pytest.param(env(s3_connect_timeout="-1"), "S3_CONNECT_TIMEOUT", id="negative timeout"),
    pytest.param(env(s3_read_timeout="0"), "S3_READ_TIMEOUT", id="zero timeout"),
    pytest.param(env(s3_connect_timeout="soon"), "S3_CONNECT_TIMEOUT", id="timeout not a number"),
    pytest.param(env(s3_connect_timeout="nan"), "S3_CONNECT_TIMEOUT", id="timeout nan"),
    pytest.param(env(presets="Thumb=200x200"), "PRESETS", id="preset name in capitals"),
    pytest.param(env(presets="1thumb=200x"), "PRESETS", id="preset name starting with a digit"),
    pytest.param(env(presets="hero=5000x"), "PRESETS", id="preset over the output cap"),
    pytest.param(env(presets="x200=200x200"), "PRESETS", id="preset name that looks like a size"),
    pytest.param(env(presets="thumb-2=200x"), "PRESETS", id="preset name with a dash"),
    pytest.param(env(presets="=200x"), "PRESETS", id="empty preset name"),
    pytest.param(env(presets="thumb=200x200-fit"), "PRESETS", id="preset spec not canonical"),
    pytest.param(env(presets="thumb=small"), "PRESETS", id="preset spec naming a preset"),
    pytest.param(env(presets="thumb=200x200-fill-zz"), "PRESETS", id="preset spec with an unknown option"),
    pytest.param(env(presets="thumb="), "PRESETS", id="empty preset spec"),
    pytest.param(env(presets="thumb"), "PRESETS", id="preset without a spec"),
    pytest.param(env(local_file_mode="0o644"), "LOCAL_FILE_MODE", id="python octal mode"),
    pytest.param(env(local_file_mode="644x"), "LOCAL_FILE_MODE", id="mode with a letter"),
    pytest.param(env(local_file_mode="0999"), "LOCAL_FILE_MODE", id="mode with non-octal digits"),
    pytest.param(env(local_file_mode="06444"), "LOCAL_FILE_MODE", id="mode too long"),
    pytest.param(env(local_file_mode="rw-r--r--"), "LOCAL_FILE_MODE", id="symbolic mode"),
    pytest.param(env(local_file_mode=""), "LOCAL_FILE_MODE", id="empty mode"),
    pytest.param(env(local_dir_mode="999"), "LOCAL_DIR_MODE", id="dir mode with non-octal digits"),
    pytest.param(env(serve_originals="maybe"), "SERVE_ORIGINALS", id="bool not a bool"),
    pytest.param(env(serve_originals="2"), "SERVE_ORIGINALS", id="bool 2"),
    pytest.param(env(serve_originals=""), "SERVE_ORIGINALS", id="empty bool"),
    pytest.param({"RESIZE_SIDECAR_COLOUR": "blue"}, "COLOUR", id="unknown variable"),
    pytest.param({"RESIZE_SIDECAR_PRESET_SPECS": "x"}, "PRESET_SPECS", id="a property is not a setting"),
    pytest.param({"RESIZE_SIDECAR_QUALITY": "80"}, "QUALITY", id="near miss of a setting's name"),
]


@pytest.mark.parametrize(("environ", "setting"), BAD_ENVIRONMENTS)
def test_an_invalid_environment_stops_with_one_line_naming_the_variable(environ: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load(environ=environ)

    assert_names_setting(refused.value, ENV_PREFIX + setting)


BAD_FILES = [
    pytest.param("storage: ftp", "STORAGE", id="unknown storage"),
    pytest.param("storage: s3", "S3_BUCKET", id="s3 without a bucket"),
    pytest.param("storage: s3\ns3_bucket: null", "S3_BUCKET", id="s3 with a null bucket"),
    pytest.param("s3_bucket: [a, b]", "S3_BUCKET", id="a list for a string"),
    pytest.param("media_url: media", "MEDIA_URL", id="media url without slashes"),
    pytest.param("derived_prefix: a/b/", "DERIVED_PREFIX", id="derived prefix of two segments"),
    pytest.param("quality_jpg: 0", "QUALITY_JPG", id="quality 0"),
    pytest.param("quality_avif: 101", "QUALITY_AVIF", id="quality 101"),
    pytest.param("quality_webp: high", "QUALITY_WEBP", id="quality not a number"),
    pytest.param("quality_jpg: 80.5", "QUALITY_JPG", id="quality not whole"),
    pytest.param("quality_jpg: true", "QUALITY_JPG", id="quality a bool"),
    pytest.param("max_frames: -1", "MAX_FRAMES", id="negative frame limit"),
    pytest.param("max_source_pixels: 0", "MAX_SOURCE_PIXELS", id="zero pixel limit"),
    pytest.param("s3_read_timeout: 0", "S3_READ_TIMEOUT", id="zero timeout"),
    pytest.param("s3_connect_timeout: fast", "S3_CONNECT_TIMEOUT", id="timeout not a number"),
    pytest.param("s3_connect_timeout: true", "S3_CONNECT_TIMEOUT", id="timeout a bool"),
    pytest.param("s3_connect_timeout: .inf", "S3_CONNECT_TIMEOUT", id="infinite timeout"),
    pytest.param("presets: {Thumb: 200x200}", "PRESETS", id="preset name in capitals"),
    pytest.param("presets: {x1: 200x}", "PRESETS", id="preset name that looks like a size"),
    pytest.param("presets: {thumb: 200x200-fit}", "PRESETS", id="preset spec not canonical"),
    pytest.param("presets: {thumb: 200}", "PRESETS", id="preset spec a number"),
    pytest.param("presets: [thumb]", "PRESETS", id="presets a list"),
    pytest.param("local_file_mode: 0644", "LOCAL_FILE_MODE", id="unquoted mode (YAML reads 420)"),
    pytest.param("local_dir_mode: 0755", "LOCAL_DIR_MODE", id="unquoted dir mode (YAML reads 493)"),
    pytest.param("local_file_mode: 644", "LOCAL_FILE_MODE", id="unquoted mode without the zero"),
    pytest.param("local_file_mode: '0o644'", "LOCAL_FILE_MODE", id="python octal mode"),
    pytest.param("serve_originals: maybe", "SERVE_ORIGINALS", id="bool not a bool"),
    pytest.param("secrets: 42", "SECRETS", id="secrets a number"),
    pytest.param("secrets: {a: b}", "SECRETS", id="secrets a mapping"),
    pytest.param('cache_control: "public\\nX-Injected: 1"', "CACHE_CONTROL", id="cache control of two lines"),
]


@pytest.mark.parametrize(("text", "setting"), BAD_FILES)
def test_an_invalid_file_value_stops_with_one_line_naming_the_setting(
    config_file: Callable[[str], str], text: str, setting: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load(config_file(text + "\n"), {})

    assert_names_setting(refused.value, ENV_PREFIX + setting)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings(secrets=("new", "")).validate()

    assert_names_setting(refused.value, ENV_PREFIX + "SECRETS")


@pytest.mark.parametrize(
    ("content", "named"),
    [
        pytest.param("colour: blue\n", "colour", id="unknown key"),
        pytest.param("STORAGE: s3\n", "STORAGE", id="key in capitals"),
        pytest.param("RESIZE_SIDECAR_STORAGE: s3\n", "RESIZE_SIDECAR_STORAGE", id="environment name as a key"),
        pytest.param("preset_specs: {}\n", "preset_specs", id="a property as a key"),
        pytest.param("- storage\n- s3\n", "mapping", id="a list, not a mapping"),
        pytest.param("just words\n", "mapping", id="a string, not a mapping"),
        pytest.param("42\n", "mapping", id="a number, not a mapping"),
        pytest.param("storage: [s3\n", "YAML", id="not YAML"),
        pytest.param("storage: local\n  media_url: /x/\n", "YAML", id="bad indentation"),
        pytest.param(b"storage: \xff\xfe\n", "", id="not UTF-8"),
        pytest.param(b"storage: local\x00\n", "", id="NUL byte"),
    ],
)
def test_a_bad_file_stops_with_one_line_naming_the_file(
    config_file: Callable[[str | bytes], str], content: str | bytes, named: str
) -> None:
    path = config_file(content)

    with pytest.raises(SettingsError) as refused:
        load(path, {})

    message = str(refused.value)
    assert_one_line(message)
    assert path in message and named in message


@pytest.mark.parametrize(
    "make_path",
    [
        pytest.param(lambda tmp_path: tmp_path / "missing.yaml", id="missing file"),
        pytest.param(lambda tmp_path: tmp_path, id="a folder"),
        pytest.param(
            lambda tmp_path: _unreadable(tmp_path / "secret.yaml"),
            id="no read permission",
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode"),
        ),
    ],
)
def test_an_unreadable_file_stops_with_one_line_naming_the_file(
    tmp_path: Path, make_path: Callable[[Path], Path]
) -> None:
    path = str(make_path(tmp_path))

    for source in ({"config_path": path, "environ": {}}, {"environ": {CONFIG_ENV: path}}):
        with pytest.raises(SettingsError) as refused:
            load(**source)
        message = str(refused.value)
        assert_one_line(message)
        assert path in message and "cannot read" in message


def _unreadable(path: Path) -> Path:
    path.write_text("storage: local\n")
    path.chmod(0)
    return path


def test_an_unknown_variable_is_refused_even_when_the_file_is_valid(config_file: Callable[[str], str]) -> None:
    with pytest.raises(SettingsError) as refused:
        load(config_file("storage: local\n"), {"RESIZE_SIDECAR_COLOUR": "blue"})

    assert_names_setting(refused.value, "RESIZE_SIDECAR_COLOUR")


# ----------------------------------------------------------------------------------------------------------------
# defaults_yaml


def test_the_defaults_yaml_loads_back_to_exactly_the_defaults(config_file: Callable[[str], str]) -> None:
    text = defaults_yaml()
    data = yaml.safe_load(text)

    assert list(data) == FIELDS
    defaults = Settings()
    for name in FIELDS:
        default = getattr(defaults, name)
        assert data[name] == (list(default) if isinstance(default, tuple) else default), name
    assert load(config_file(text), {}) == defaults


def test_the_defaults_yaml_documents_every_setting_above_it() -> None:
    lines = defaults_yaml().splitlines()

    for f in fields(Settings):
        doc = f.metadata["doc"]
        assert doc and "\n" not in doc, f.name
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"{f.name}:")]
        assert lines[index - 1] == f"# {doc} (env {env_name(f.name)})"


def test_the_image_limits_are_the_settings_of_the_same_names() -> None:
    values = {f.name: index + 1 for index, f in enumerate(fields(ImageLimits)) if f.name != "allowed_loaders"}
    values["transform_timeout"] = 7
    settings = Settings(allowed_loaders=("pngload",), **values)  # type: ignore[arg-type]

    limits = settings.image_limits
    assert {f.name: getattr(limits, f.name) for f in fields(ImageLimits)} == {**values, "allowed_loaders": ("pngload",)}
    assert [limits.quality_for(fmt) for fmt in ("jpg", "webp", "avif")] == [
        values["quality_jpg"], values["quality_webp"], values["quality_avif"]
    ]  # fmt: skip


def test_a_secret_is_required_in_one_wording() -> None:
    assert Settings(secrets=("a", "b")).require_secrets() == ("a", "b")
    with pytest.raises(SettingsError) as refused:
        Settings().require_secrets()
    assert str(refused.value) == (
        "RESIZE_SIDECAR_SECRETS (secrets): a secret is required to sign and verify derivative URLs"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param("storage", "gcs", "must be 'local' or 's3', got 'gcs'", id="storage"),
        pytest.param("on_miss", "proxy", "must be 'serve' or 'redirect', got 'proxy'", id="on miss"),
        pytest.param("nginx_s3_auth", "sigv2", "must be 'none' or 'sigv4', got 'sigv2'", id="nginx s3 auth"),
    ],
)
def test_a_choice_outside_its_literal_is_refused_naming_the_choices(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load(None, {env_name(name): value})
    assert str(refused.value) == f"{env_name(name)} ({name}): {message}"
