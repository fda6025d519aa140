"""The ``resize-sidecar`` command: serve, sign a URL, print settings, render the nginx configuration.

Heavy modules (pyvips, boto3, gunicorn) are imported inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from resize_sidecar import settings as settings_module
from resize_sidecar.errors import MalformedPathError, SettingsError
from resize_sidecar.settings import Settings
from resize_sidecar.signing import format_path


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
    nginx.add_argument(
        "--s3-auth", choices=("none", "sigv4"), help="how nginx reads S3 (default: the nginx_s3_auth setting)"
    )
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
    from resize_sidecar.nginx import render_nginx

    text = render_nginx(
        settings, listen=args.listen, sidecar=args.sidecar, app=args.app, snippet=args.snippet, s3_auth=args.s3_auth
    )
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
