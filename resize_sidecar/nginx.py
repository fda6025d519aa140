"""The nginx configuration, rendered from the settings with the templates in ``deploy/nginx/``.

Templates use ``{{name}}`` placeholders, which cannot be mistaken for nginx's own ``$variables``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from resize_sidecar.errors import SettingsError
from resize_sidecar.settings import Settings

TEMPLATES = Path(__file__).resolve().parent / "nginx_templates"


def render_nginx(settings: Settings, *, listen: str, sidecar: str, app: str | None, snippet: bool) -> str:
    """An nginx configuration for these settings: a whole ``nginx.conf``, or only its location blocks.

    Raises:
        SettingsError: a URL argument that nginx could not use.
    """
    sidecar_url = urlsplit(sidecar)
    if sidecar_url.scheme not in ("http", "https") or not sidecar_url.netloc or sidecar_url.path.strip("/"):
        raise SettingsError(f"--sidecar: expected a URL such as http://127.0.0.1:8000, got {sidecar!r}")
    values = {
        "listen": listen,
        "media_url": settings.media_url,
        "derived_prefix": settings.derived_prefix,
        "cache_control": _escape(settings.cache_control),
        "sidecar_address": sidecar_url.netloc,
        # The whole file names the upstream (with keepalive); a snippet cannot declare one inside a server.
        "sidecar_pass": f"{sidecar_url.scheme}://{sidecar_url.netloc}" if snippet else "http://resize_sidecar",
    }
    if settings.storage == "s3":
        values.update(_s3_values(settings))
        media = _render("media-s3.conf", values)
    else:
        values["local_root"] = _escape(str(Path(settings.local_root).resolve()))
        values["originals"] = f'    alias "{values["local_root"]}/";' if settings.serve_originals else "    return 404;"
        media = _render("media-local.conf", values)
    locations = [media, _render("resize.conf", values)]
    if app:
        locations.append(_render("app.conf", {"app_url": app}))
    text = "\n".join(locations)
    if snippet:
        return text
    return _render("nginx.conf", {**values, "locations": _indent(text, 8)})


def _s3_values(settings: Settings) -> dict[str, str]:
    if settings.s3_endpoint_url:
        endpoint = urlsplit(settings.s3_endpoint_url)
        origin, host = f"{endpoint.scheme}://{endpoint.netloc}", endpoint.netloc
    else:
        host = f"s3.{settings.s3_region}.amazonaws.com"
        origin = f"https://{host}"
    values = {
        "s3_origin": origin,
        "s3_host": host,
        "s3_path": f"/{settings.s3_bucket}/{settings.s3_prefix}",
    }
    values["s3_proxy_settings"] = _render("s3-proxy.conf", values).rstrip("\n")
    if settings.serve_originals:
        values["originals"] = "\n".join(
            ['    set $args "";', f"    proxy_pass {origin}{values['s3_path']};", values["s3_proxy_settings"]]
        )
    else:
        values["originals"] = "    return 404;"
    return values


def _render(name: str, values: dict[str, str]) -> str:
    text = (TEMPLATES / f"{name}.template").read_text(encoding="utf-8")
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values[match[1]], text)


def _indent(text: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line.strip() else "" for line in text.splitlines())


def _escape(value: str) -> str:
    """The inside of a double-quoted nginx string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
