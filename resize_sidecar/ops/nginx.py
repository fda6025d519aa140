"""The nginx configuration, rendered from the settings with the templates in ``deploy/nginx/``.

Templates use ``{{name}}`` placeholders, which cannot be mistaken for nginx's own ``$variables``.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from resize_sidecar.core import auto, private
from resize_sidecar.core.errors import SettingsError
from resize_sidecar.core.formats import ORIGINAL_TYPES, OUTPUT_FORMATS
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import PRIVATE_DERIVED_PREFIX, PRIVATE_PREFIX, STORAGE_NAME_PREFIX

TEMPLATES = Path(__file__).resolve().parent / "nginx_templates"
#: The njs scripts nginx imports (from TEMPLATES, or from the folder ``scripts`` names).
SCRIPTS = ("derivatives.js", "private.js", "s3-sigv4.js")
# Debian's libnginx-mod-http-js; other builds put it elsewhere or compile njs in.
JS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
#: nginx's cache of open derivative files (local storage): a hit then skips the open() and the stat() of
#: ``try_files`` (1.46x the hits per second, bench/results/experiments.md). Misses are not cached, so a new derivative
#: is served at once; one replaced or deleted (``regenerate``, a delete) may still be served for the validity period.
OPEN_FILE_CACHE = ("open_file_cache max=10000 inactive=60s;", "open_file_cache_valid 10s;")
#: S3 answers that mean neither "missing" (403, 404, which fall back to the sidecar) nor success (200, and 304 to
#: the client's own If-None-Match): an expired token or a wrong region (400), a redirect to another region (301, 307),
#: any other refusal or an error. nginx answers them 502 with its own body: S3's XML and Location never reach clients.
#: 405, 412 and 416 are left out: nginx makes those itself in these locations (a method check, If-Match and ranges,
#: which it never passes on to S3), and S3 cannot answer them to nginx's plain GET.
_S3_FAULTS = " ".join(
    str(status.value)
    for status in HTTPStatus
    if 300 <= status.value < 600 and status.value not in (304, 403, 404, 405, 412, 416, 504)
)


def render_nginx(
    settings: Settings,
    *,
    listen: str,
    sidecar: str,
    app: str | None = None,
    snippet: Literal["locations", "http"] | None = None,
    s3_auth: str | None = None,
    scripts: Path = TEMPLATES,
) -> str:
    """An nginx configuration for these settings: a whole ``nginx.conf``, or a snippet for an nginx already
    running: its location blocks, to include in a ``server {}``, or what they need in ``http {}`` (njs, maps,
    upstreams, the cache zone), preceded by what they need in the main context, commented out (Debian's njs package
    loads the module itself).

    ``s3_auth`` overrides the ``nginx_s3_auth`` setting. ``scripts`` is the folder nginx reads the njs scripts
    (:data:`SCRIPTS`) from: this package's own, or one they were copied to (an nginx in another container).

    Raises:
        SettingsError: a URL argument that nginx could not use, an unknown S3 authentication mode, or a setting that
            nginx would read as more than one word (a blank, ``;``, braces, quotes, ``$``).
    """
    sidecar_url = urlsplit(sidecar)
    if sidecar_url.scheme not in ("http", "https") or not sidecar_url.netloc or sidecar_url.path.strip("/"):
        raise SettingsError(f"--sidecar: expected a URL such as http://127.0.0.1:8000, got {sidecar!r}")
    s3_auth = s3_auth or settings.nginx_s3_auth
    if s3_auth not in ("none", "sigv4"):
        raise SettingsError(f"--s3-auth: expected 'none' or 'sigv4', got {s3_auth!r}")
    secrets = settings.require_secrets()
    s3 = settings.storage == "s3"
    signed = s3 and s3_auth == "sigv4"
    cached = s3 and bool(settings.nginx_cache_size)
    # Private URLs are handled here only where nginx can read them: locally, or from S3 with SigV4. With anonymous
    # reads the sidecar answers them, with the same checks and answers.
    private_edge = signed or not s3
    values = {
        "listen": listen,
        "media_url": settings.media_url,
        "derived_prefix": settings.derived_prefix,
        "private_prefix": PRIVATE_PREFIX,
        "cache_control": _escape(settings.cache_control),
        "cache_valid": _bare("NGINX_CACHE_VALID", settings.nginx_cache_valid),
        "cache_inactive": settings.nginx_cache_inactive,
        "sidecar_address": _bare("--sidecar", sidecar_url.netloc),
        # The whole file names the upstream (with keepalive); a snippet cannot declare one inside a server.
        "sidecar_pass": f"{sidecar_url.scheme}://{sidecar_url.netloc}" if snippet else "http://resize_sidecar",
    }
    values["proxy_headers"] = _render("proxy-headers.conf", {}).rstrip("\n")
    values["not_served"] = _render("not-served.conf", values).rstrip("\n")
    values["max_source"] = str(settings.max_source_bytes)
    values["max_body"] = str(settings.max_source_bytes + 65536)
    # An archive is spooled whole, so a client that reads it slowly holds a file of nginx's, not a sidecar thread.
    values["max_spool"] = str(settings.archive_max_bytes + (64 << 20))
    values["cache"] = _render("cache.conf", values) if cached else ""
    values["public_cache"] = values["cache"] + _render("cache-public.conf", {}) if cached else ""
    values["private_derived_prefix"] = PRIVATE_DERIVED_PREFIX
    # Ends the line before it in the templates.
    values["auto"] = "\n" + _render("auto.conf", {}).rstrip("\n")
    if private_edge:
        keys = " ".join(private.token_key(secret) for secret in secrets)
        values["private_check"] = _render("private-check.conf", {"private_keys": keys}).rstrip("\n")

    def derivative_check(prefix: str, signing_keys: list[str]) -> str:
        check = {
            "derivatives_url": settings.media_url + prefix,
            "derivatives_key": prefix,
            "signed_keys": "signed" if settings.signed_storage_keys else "",
            "signing_keys": " ".join(key.encode().hex() for key in signing_keys),
        }
        return _render("derivative-check.conf", check).rstrip("\n")

    values["derivative_check"] = derivative_check(settings.derived_prefix, list(secrets))
    values["private_derivative_check"] = derivative_check(PRIVATE_DERIVED_PREFIX, private.signing_keys(secrets))
    # Errors from the sidecar are never cached downstream ($resize_cache_control, a map in http {}).
    resize_extra = [
        "    proxy_hide_header Cache-Control;",
        "    add_header Cache-Control $resize_cache_control always;",
    ]
    # A private URL reaches @resize unchecked where nginx does not check it (anonymous S3 reads): its answer is never
    # cached here, or a later request with an expired token would be served from the cache.
    private_misses = ["    proxy_no_cache $arg_token;", "    proxy_cache_bypass $arg_token;"]
    # A public hit's check with S3 runs in the background (cache-public.conf): when its object is gone and so is
    # the original, the sidecar's 404 must replace the stale entry, or the entry would be served on and on.
    missing_original = ["    proxy_cache_valid 404 1s;"]
    resize_cache = [values["cache"], *missing_original, *private_misses] if cached else []
    values["resize_extra"] = "\n".join(resize_extra + resize_cache)
    if s3:
        values.update(_s3_values(settings, signed))
        values["private"] = _render("private-s3.conf" if private_edge else "private-sidecar.conf", values)
        media = _render("media-s3.conf", values)
    else:
        values["local_root"] = _escape(str(Path(settings.local_root).resolve()))
        values["storage_names"] = _render(
            "storage-names.conf", {"storage_name_pattern": re.escape(STORAGE_NAME_PREFIX)}
        ).rstrip("\n")
        values["open_file_cache"] = "\n".join(f"    {line}" for line in OPEN_FILE_CACHE)
        values["original_types"] = " ".join(
            f"{kind} {' '.join(extensions)};" for kind, extensions in ORIGINAL_TYPES.items()
        )
        values["originals"] = (
            _render("originals-local.conf", values).rstrip("\n") if settings.serve_originals else "    return 404;"
        )
        values["private"] = _render("private-local.conf" if private_edge else "private-sidecar.conf", values)
        media = _render("media-local.conf", values)
    locations = [media, _render("resize.conf", values), _render("api.conf", values)]
    if app:
        locations.append(_render("app.conf", {"app_url": app, "proxy_headers": values["proxy_headers"]}))
    text = "\n".join(locations)

    # Every derivative's signature is checked by njs (derivatives.js).
    main = [f"load_module {JS_MODULE};"]
    main += [f"env {name};" for name in _AWS_ENV] if signed else []
    http = _derivatives_http(scripts)
    http += _maps_http()
    if private_edge:
        http += _private_http(scripts)
    if s3 and settings.serve_originals:
        image_types = "|".join(re.escape(kind) for kind in ORIGINAL_TYPES)
        http += [
            "map $upstream_http_content_type $resize_original_type {",
            f'    "~*^({image_types})$" $upstream_http_content_type;',
            "    default application/octet-stream;",
            "}",
        ]
    if cached:
        http.append(
            f"proxy_cache_path cache levels=1:2 keys_zone=resize_media:16m max_size={settings.nginx_cache_size}"
            f" inactive={settings.nginx_cache_inactive} use_temp_path=off;"
        )
    if signed:
        http += _sigv4_http(values, scripts)
    if snippet == "http":
        outside = "\n".join(f"#   {line}" for line in main)
        header = "# In the main context of nginx.conf (where no other file loads njs):"
        return "\n".join([header, outside, *http]) + "\n"
    if snippet:
        return f"# Needs what `resize-sidecar nginx --snippet-http` prints, in the http context.\n{text}"
    return _render(
        "nginx.conf",
        {
            **values,
            "main": "\n".join(main),
            "http": _indent(_render("http.conf", {"outside": "\n".join(http)}), 4),
            "locations": _indent(text, 8),
            "output_types": "\n".join(
                f"        {fmt.content_type} {' '.join(fmt.extensions)};" for fmt in OUTPUT_FORMATS
            ),
        },
    )


_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def _s3_values(settings: Settings, signed: bool) -> dict[str, str]:
    if settings.s3_endpoint_url:
        endpoint = urlsplit(settings.s3_endpoint_url)
        scheme, host = endpoint.scheme, endpoint.netloc
    else:
        scheme, host = "https", f"s3.{settings.s3_region}.amazonaws.com"
    host = _bare("S3_ENDPOINT_URL", host)
    for name in ("s3_bucket", "s3_prefix", "s3_region"):
        _bare(name.upper(), getattr(settings, name))
    values = {
        "media_url": settings.media_url,
        "s3_origin": f"{scheme}://{host}",
        "s3_upstream": f"{scheme}://resize_s3",
        "s3_server": host if ":" in host else f"{host}:{443 if scheme == 'https' else 80}",
        "s3_host": host,
        "s3_hostname": host.rsplit(":", 1)[0] if not host.endswith("]") else host,
        "s3_bucket": settings.s3_bucket,
        "s3_prefix": settings.s3_prefix,
        "s3_region": settings.s3_region,
        "s3_credentials_file": _escape(settings.nginx_s3_credentials_file),
        "s3_connect_timeout": f"{round(settings.s3_connect_timeout * 1000)}ms",
        "s3_read_timeout": f"{round(settings.s3_read_timeout * 1000)}ms",
        "s3_faults": _S3_FAULTS,
    }
    bucket_path = f"/{settings.s3_bucket}/{settings.s3_prefix}"

    def read(path: str = "") -> str:
        """Everything a location needs to read objects: at ``path`` in place of the location's prefix, or (without
        one) at the path the location rewrote the URI to, ``{bucket_path}{storage key}``."""
        strip = settings.media_url if path else bucket_path
        if signed:
            reader = _render("s3-sigv4.conf", {**values, "s3_strip": strip})
        else:
            reader = _render("s3-anonymous.conf", {**values, "s3_path": path})
        return _render("s3-proxy.conf", {**values, "s3_pass": reader.rstrip("\n")}).rstrip("\n")

    values["s3_bucket_path"] = bucket_path
    values["s3_read"] = read()
    originals = read(bucket_path) + "\n" + _render("originals-s3.conf", values).rstrip("\n")
    values["originals"] = originals if settings.serve_originals else "    return 404;"
    return values


def _maps_http() -> list[str]:
    """The maps of the media locations: no-store on errors (the sidecar's, or nginx's own when it cannot reach it),
    and for .auto URLs the format chosen by Accept (core/auto.py's table) and Vary on those URLs only."""
    choices = [f'    "~*{re.escape(content_type)}" {fmt};' for content_type, fmt in auto.CHOICES]
    return [
        "map $status $resize_cache_control {",
        '    ~^[45] "no-store";',
        "    default $upstream_http_cache_control;",
        "}",
        "map $http_accept $resize_auto_format {",
        f"    default {auto.FALLBACK};",
        *choices,
        "}",
        "map $request_uri $resize_vary {",
        '    default "";',
        f'    "~\\.{auto.AUTO}(\\?|$)" {auto.VARY};',
        "}",
    ]


def _derivatives_http(scripts: Path) -> list[str]:
    return [
        f"js_import resize_derivatives from {scripts / 'derivatives.js'};",
        "js_set $resize_derivative resize_derivatives.derivative;",
    ]


def _private_http(scripts: Path) -> list[str]:
    return [
        f"js_import resize_private from {scripts / 'private.js'};",
        "js_set $resize_private_refusal resize_private.refusal;",
        "js_set $resize_private_cache_control resize_private.cacheControl;",
    ]


def _sigv4_http(values: dict[str, str], scripts: Path) -> list[str]:
    return [
        f"js_import s3 from {scripts / 's3-sigv4.js'};",
        "js_set $s3_uri s3.uri;",
        "js_set $s3_date s3.date;",
        "js_set $s3_authorization s3.authorization;",
        "js_set $s3_security_token s3.securityToken;",
        "upstream resize_s3 {",
        f"    server {values['s3_server']};",
        "    keepalive 16;",
        "}",
    ]


def _render(name: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / f"{name}.template").read_text(encoding="utf-8")
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values[match[1]], text)


def _indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line.strip() else "" for line in text.splitlines())


def _escape(value: str) -> str:
    """The inside of a double-quoted nginx string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


#: What a value pasted into the configuration as a bare word may hold: nothing that ends a directive (``;``,
#: braces, blanks), quotes, or makes a variable (``$``). Settings validate these values; this is the renderer's own
#: guard for settings made without validation.
_BARE = re.compile(r"[A-Za-z0-9._~:/\[\]%@!*+,=()-]*")


def _bare(name: str, value: str) -> str:
    """``value``, which goes into nginx.conf unquoted, or SettingsError if nginx could read it as more than a word."""
    if _BARE.fullmatch(value) is None:
        raise SettingsError(f"{name}: {value!r} cannot go into nginx's configuration")
    return value
