"""The ``resize-sidecar`` command: serve, sign a URL, print settings, render the nginx configuration.

Heavy modules (pyvips, boto3, gunicorn) are imported inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from resize_sidecar import settings as settings_module
from resize_sidecar.errors import MalformedPathError, SettingsError
from resize_sidecar.settings import Settings
from resize_sidecar.signing import format_path

TEMPLATES = Path(__file__).resolve().parent / "nginx_templates"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        # Also for the gunicorn workers that `serve` starts: they load settings from the environment.
        os.environ[settings_module.CONFIG_ENV] = args.config
    try:
        settings = settings_module.load(args.config)
        return int(args.run(settings, args) or 0)
    except (SettingsError, MalformedPathError) as error:
        print(f"resize-sidecar: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resize-sidecar", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", help="YAML settings file (default: $RESIZE_SIDECAR_CONFIG)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the sidecar with gunicorn")
    serve.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT to listen on (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    serve.set_defaults(run=serve_command)

    url = commands.add_parser("url", help="print the signed path of a derivative")
    url.add_argument("key", help="the original's storage key, e.g. photos/cat.jpg")
    url.add_argument("spec", metavar="SPEC.FMT", help="a spec or preset and a format, e.g. 400x300-fill.webp")
    url.set_defaults(run=url_command)

    config = commands.add_parser("config", help="print settings as YAML")
    config.add_argument("--defaults", action="store_true", help="every setting with its default and doc")
    config.set_defaults(run=config_command)

    nginx = commands.add_parser("nginx", help="print an nginx configuration rendered from the settings")
    nginx.add_argument("--listen", default="8080", help="nginx listen address (default: %(default)s)")
    nginx.add_argument("--sidecar", default="http://127.0.0.1:8000", help="sidecar URL (default: %(default)s)")
    nginx.add_argument("--app", metavar="URL", help="proxy every other path to this web application")
    nginx.add_argument("--snippet", action="store_true", help="only the location blocks, to include in a server")
    nginx.set_defaults(run=nginx_command)
    return parser


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.secrets:
        raise SettingsError("RESIZE_SIDECAR_SECRETS (secrets): at least one secret is required to verify URLs")
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:resize_sidecar.gunicorn_conf",
        "--bind", args.bind,
        "--workers", str(args.workers),
        "resize_sidecar.app:make_app()",
    ]  # fmt: skip
    sys.stdout.flush()
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


def url_command(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.secrets:
        raise SettingsError("RESIZE_SIDECAR_SECRETS (secrets): a secret is required to sign URLs")
    spec, dot, fmt = args.spec.rpartition(".")
    if not dot:
        raise MalformedPathError(f"expected SPEC.FMT such as 400x300.webp, got {args.spec!r}")
    path = format_path(
        args.key, spec, fmt, settings.secrets[0], media_url=settings.media_url, derived_prefix=settings.derived_prefix
    )
    print(settings.public_base_url.rstrip("/") + path)
    return 0


def config_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.defaults:
        print(settings_module.defaults_yaml(), end="")
        return 0
    print(settings_module.settings_yaml(settings), end="")
    return 0


def nginx_command(settings: Settings, args: argparse.Namespace) -> int:
    print(render_nginx(settings, listen=args.listen, sidecar=args.sidecar, app=args.app, snippet=args.snippet), end="")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
