"""The ``resize-sidecar`` command: serve, sign URLs, print settings and nginx configuration, operate storage.

Heavy modules (pyvips, boto3, gunicorn, tqdm) are imported inside the subcommands that need them. The operations
live in their own modules (``upload.py``, ``regenerate.py``, ``migrate.py``, ``check.py``, ``bucket.py``, sharing
``runs.py`` and ``shards.py``); here they are parsed and printed. Exit codes: 0 done, 1 something failed (the output
says what), 2 a usage or settings mistake, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from resize_sidecar import __version__
from resize_sidecar.core import private
from resize_sidecar.core import settings as settings_module
from resize_sidecar.core.errors import MalformedPathError, PolicyError, SettingsError, SidecarError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.ops.runs import FAILED, Outcome, Report
from resize_sidecar.ops.shards import INDEX_ENV, Shard


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        # Also for the gunicorn workers that `serve` starts: they load settings from the environment.
        os.environ[settings_module.CONFIG_ENV] = args.config
    try:
        settings = settings_module.load(args.config)
        return int(args.run(settings, args) or 0)
    except (SettingsError, MalformedPathError, PolicyError) as error:
        print(f"resize-sidecar: {error}", file=sys.stderr)
        return 2
    except SidecarError as error:
        # Storage unreachable, a missing bucket: the run could not start or had to stop.
        print(f"resize-sidecar: {error.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("resize-sidecar: interrupted; run the same command again to finish", file=sys.stderr)
        return 130


#: The top-level help: plain text, as a terminal shows it.
DESCRIPTION = (
    "Signed, on-demand image derivatives served by nginx: run the sidecar, sign URLs, print the settings and "
    "nginx's configuration, and look after the media in storage."
)
EPILOG = (
    "Settings come from RESIZE_SIDECAR_* environment variables and --config FILE ('resize-sidecar config --defaults' "
    "lists them). Each command has --help. Exit codes: 0 done, 1 something failed (the output says what), 2 a "
    "mistake in the command or the settings, 130 interrupted."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resize-sidecar", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", metavar="FILE", help="YAML settings file (default: $RESIZE_SIDECAR_CONFIG)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = subcommand(
        commands,
        "serve",
        "run the sidecar with gunicorn",
        "Threaded workers (waits on storage overlap), max_requests with jitter, one libvips thread per transform, "
        "and metrics added up across workers; settings come from the environment, for the workers too. Clients "
        "never reach this port: nginx goes in front (see the nginx command).",
    )
    serve.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT to listen on (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=2, help="worker processes, one per CPU (default: %(default)s)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker (default: %(default)s)")
    serve.set_defaults(run=serve_command)

    url = subcommand(
        commands,
        "url",
        "print the signed URL of a derivative",
        "Signed with the first secret, after PUBLIC_BASE_URL (if set): MEDIA_URL _r/KEY/SPEC-SIGNATURE.FMT. SPEC is "
        "a preset name or a spec in its one canonical spelling, e.g. 400x300-fill; FMT a format, or auto for the "
        "one the browser takes best. With --private, an expiring URL under _p/ with ?expires=…&token=….",
    )
    url.add_argument("key", help="the original's storage key, e.g. photos/cat.jpg")
    url.add_argument("spec", metavar="SPEC.FMT", help="a spec or preset and a format, e.g. 400x300-fill.webp")
    url.add_argument("--private", action="store_true", help="a private URL, valid for PRIVATE_URL_LIFETIME")
    url.add_argument("--expires-in", type=int, metavar="SECONDS", help="a private URL valid this long instead")
    url.set_defaults(run=url_command)

    config = subcommand(
        commands,
        "config",
        "print settings as YAML",
        "The settings in effect (environment and --config file), secrets masked; with --defaults, every setting "
        "with its default and what it does, as a file that --config reads.",
    )
    config.add_argument("--defaults", action="store_true", help="every setting with its default and doc")
    config.set_defaults(run=config_command)

    nginx = subcommand(
        commands,
        "nginx",
        "print an nginx configuration rendered from the settings",
        "A whole nginx.conf that runs beside a system nginx, by any user, with its pid file, logs and temporary "
        "files in one folder: nginx -p DIR/ -c DIR/nginx.conf. With --snippet, only the location blocks, to "
        "include in a server { } of an nginx you already run (Debian's: /etc/nginx/sites-enabled/); with "
        "--snippet-http, what they need in its http { } (Debian's: /etc/nginx/conf.d/). The configuration holds "
        "the signing secrets: keep it readable by root and nginx only.",
    )
    nginx.add_argument("--listen", default="8080", help="nginx listen address (default: %(default)s)")
    nginx.add_argument("--sidecar", default="http://127.0.0.1:8000", help="sidecar URL (default: %(default)s)")
    nginx.add_argument("--app", metavar="URL", help="proxy every other path to this web application")
    part = nginx.add_mutually_exclusive_group()
    part.add_argument("--snippet", action="store_true", help="only the location blocks, to include in a server")
    part.add_argument("--snippet-http", action="store_true", help="what the snippet needs in http { }")
    nginx.add_argument(
        "--s3-auth", choices=("none", "sigv4"), help="how nginx reads S3 (default: the nginx_s3_auth setting)"
    )
    nginx.add_argument(
        "--scripts",
        metavar="DIR",
        type=Path,
        help="the folder nginx reads the njs scripts from, where --copy-scripts put them (default: the package's own)",
    )
    nginx.add_argument(
        "--copy-scripts", action="store_true", help="copy the njs scripts into --scripts DIR first (another container)"
    )
    nginx.set_defaults(run=nginx_command)
    add_operations(commands)
    return parser


def subcommand(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, details: str
) -> argparse.ArgumentParser:
    """A command listed with ``summary`` in the top-level help, and described by both in its own."""
    return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {details}")


def add_operations(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    upload = subcommand(
        commands,
        "upload",
        "upload the images of a folder as originals, only those new or changed",
        "Images are recognised by their content, and must be named with an extension of their type; each key is "
        "PREFIX + the path under DIR. Writes .resize-sidecar/upload/PREFIX/manifest.json, which nginx never serves "
        "(key, size, md5, width, height, public URL, signed URLs of the presets), and prints each public URL; with "
        "--shard K/N, manifest.K-of-N.json. A file is unchanged when the manifest has its MD5 and its object exists.",
    )
    upload.add_argument("directory", metavar="DIR", type=Path, help="the folder to upload")
    upload.add_argument("--dest", metavar="PREFIX", default="", help="key prefix of the originals, e.g. photos/")
    bulk_options(upload)
    upload.set_defaults(run=upload_command)

    setup = subcommand(
        commands,
        "setup-bucket",
        "create and configure an S3 bucket for the sidecar",
        "Creates the bucket if needed, then sets only what is asked for, keeping what others configured; prints what "
        "it changed. Running it again changes nothing.",
    )
    setup.add_argument("bucket", metavar="BUCKET")
    setup.add_argument(
        "--public-read",
        action="store_true",
        help="let anyone read derivatives (a bucket policy; originals stay private), block public ACLs, and verify "
        "with a test object",
    )
    setup.add_argument(
        "--no-public-access-block",
        dest="public_access_block",
        action="store_false",
        help="with --public-read: leave the public access block alone, for stores that refuse every write under one "
        "(Ceph's RADOS Gateway)",
    )
    setup.add_argument("--website", action="store_true", help="turn on static website hosting")
    setup.add_argument(
        "--redirect-host",
        metavar="HOST",
        help="with --website: send misses of derivatives to the sidecar at HOST (https://HOST, or a URL) with a 302",
    )
    setup.add_argument(
        "--incoming-expiry", metavar="DAYS", type=positive, help="expire uploads never activated after DAYS days"
    )
    setup.add_argument("--cors", metavar="ORIGIN", action="append", default=[], help="allow GET from ORIGIN (repeat)")
    setup.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    setup.add_argument("--json", action="store_true", help="print the changes as JSON")
    setup.set_defaults(run=setup_bucket_command)

    regenerate = subcommand(
        commands,
        "regenerate",
        "rebuild stored derivatives after a settings change",
        "Each derivative is stored with the recipe that made it (spec, quality, encoder settings, libvips); those "
        "whose recipe or original changed are rendered again and rewritten if their bytes changed (each object is "
        "replaced whole, so it is safe while the sidecar serves); a second run renders and writes nothing. "
        "Derivatives of a removed preset or of a deleted original are stale: reported, or deleted with "
        "--delete-stale.",
    )
    regenerate.add_argument("--prefix", metavar="P", default="", help="only derivatives of originals under P")
    which = regenerate.add_mutually_exclusive_group()
    which.add_argument("--spec", metavar="SPEC.FMT", help="only this spec (or preset) and format, e.g. 400x300.webp")
    which.add_argument("--preset", metavar="NAME", help="only this preset, in every format")
    which.add_argument("--existing", action="store_true", help="every existing derivative (the default)")
    regenerate.add_argument("--delete-stale", action="store_true", help="delete derivatives that cannot be made now")
    regenerate.add_argument(
        "--force",
        action="store_true",
        help="render every selected derivative, even those whose recorded recipe is current (after a change the "
        "recipe cannot see); only changed bytes are written all the same",
    )
    bulk_options(regenerate)
    regenerate.set_defaults(run=regenerate_command)

    migrate = subcommand(
        commands,
        "migrate",
        "move derivatives stored at signed keys to the keys without the signature",
        "A store written before derivatives were stored without their signature keeps each at its URL's path; "
        "nginx now reads it without the signature. Each verified one is copied (with its type, Cache-Control and "
        "recipe, never over an object already there) and its signed object deleted; those signed with no current "
        "secret are reported unverified. Nothing is rendered; a second run moves nothing, and one cut off is "
        "finished by running it again. Refused in redirect mode, whose keys keep the signature.",
    )
    migrate.add_argument("--prefix", metavar="P", default="", help="only derivatives of originals under P")
    migrate.add_argument(
        "--keep-old",
        action="store_true",
        help="copy, and keep the signed objects: for the version that still reads them, before an upgrade",
    )
    migrate.add_argument(
        "--delete-unverified",
        action="store_true",
        help="delete the signed objects that no current secret signed (a rotated secret's renders)",
    )
    bulk_options(migrate)
    migrate.set_defaults(run=migrate_command)

    check = subcommand(
        commands,
        "check",
        "check settings, secrets, storage, image formats and the nginx configuration",
        "Prints a line per check (ok, warn or fail, and what it found) and a verdict. Exits 0 when healthy, 1 when "
        "any check fails (warnings do not fail it).",
    )
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    check.set_defaults(run=check_command)


def bulk_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", metavar="N", type=positive, default=4, help="parallel workers (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be written, write nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no line per item, only problems")
    parser.add_argument("--json", action="store_true", help="print one JSON report instead of lines")
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="only part K of N (0 <= K < N), cut by original key, for N machines to share the work; index/N takes "
        f"K from ${INDEX_ENV}, as a Kubernetes Indexed Job sets it",
    )


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def serve_command(settings: Settings, args: argparse.Namespace) -> int:
    settings.require_secrets()
    command = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:resize_sidecar.ops.gunicorn_conf",
        "--bind", args.bind,
        "--workers", str(args.workers),
        "--threads", str(args.threads),
        "resize_sidecar.web.app:make_app()",
    ]  # fmt: skip
    sys.stdout.flush()
    os.execv(sys.executable, command)
    return 0  # not reached: execv replaces this process


def url_command(settings: Settings, args: argparse.Namespace) -> int:
    spec, dot, fmt = args.spec.rpartition(".")
    if not dot:
        raise MalformedPathError(f"expected SPEC.FMT such as 400x300.webp, got {args.spec!r}")
    urls = MediaURLs(settings)
    if args.private or args.expires_in is not None:
        lifetime = settings.private_url_lifetime if args.expires_in is None else args.expires_in
        print(urls.private_url(args.key, spec, fmt, private.expiry(time.time(), lifetime)))
    else:
        print(urls.spec_url(args.key, spec, fmt))
    return 0


def config_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.defaults:
        print(settings_module.defaults_yaml(), end="")
        return 0
    print(settings_module.settings_yaml(settings), end="")
    return 0


def nginx_command(settings: Settings, args: argparse.Namespace) -> int:
    from resize_sidecar.ops.nginx import SCRIPTS, TEMPLATES, render_nginx

    snippet: Literal["locations", "http"] | None = "http" if args.snippet_http else None
    if args.snippet:
        snippet = "locations"
    scripts = args.scripts or TEMPLATES
    text = render_nginx(
        settings,
        listen=args.listen,
        sidecar=args.sidecar,
        app=args.app,
        snippet=snippet,
        s3_auth=args.s3_auth,
        scripts=scripts,
    )
    if args.copy_scripts:
        if args.scripts is None:
            raise SettingsError("--copy-scripts: name the folder to copy them into with --scripts DIR")
        scripts.mkdir(parents=True, exist_ok=True)
        for name in SCRIPTS:
            shutil.copyfile(TEMPLATES / name, scripts / name)
    print(text, end="")
    return 0


class BarProgress:
    """The progress of a bulk run on stderr, when it is a terminal, with a line per item on stdout."""

    def __init__(self, args: argparse.Namespace, unit: str) -> None:
        self.args = args
        self.unit = unit
        self.bar: Any = None

    def start(self, total: int | None) -> None:
        from tqdm import tqdm

        hidden = self.args.quiet or self.args.json or not sys.stderr.isatty()
        self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, disable=hidden, leave=False, dynamic_ncols=True)

    def done(self, outcome: Outcome) -> None:
        self.bar.update(1)
        failed = outcome.status == FAILED
        if self.args.json or (self.args.quiet and not failed):
            return
        detail = f": {outcome.detail}" if outcome.detail else ""
        # tqdm.write keeps the bar below the lines.
        self.bar.write(
            f"{outcome.status:<13} {outcome.url or outcome.item}{detail}", file=sys.stderr if failed else sys.stdout
        )

    def __enter__(self) -> BarProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.close()


def finish(report: Report, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for note in [] if args.quiet else report.notes:
            print(note, file=sys.stderr)
        print(report.summary())
    return 0 if report.ok else 1


def render_as_the_workers_do() -> None:
    """Give each transform of this process one libvips thread, as the sidecar's workers have (gunicorn_conf.py).

    AVIF output differs with the thread count, and regenerate compares fresh renders with stored ones byte for byte;
    a batch also shares the machine's transform slots with the misses, each slot worth one core.
    """
    from resize_sidecar.media import imaging

    imaging.set_render_threads(1)


def shard_of(args: argparse.Namespace) -> Shard | None:
    """Raises: SettingsError: ``--shard`` is not K/N with 0 <= K < N (see :meth:`Shard.parse`)."""
    return None if args.shard is None else Shard.parse(args.shard)


def upload_command(settings: Settings, args: argparse.Namespace) -> int:
    from resize_sidecar.media.stores import open_storage
    from resize_sidecar.ops.upload import upload

    shard = shard_of(args)
    render_as_the_workers_do()
    with BarProgress(args, "file") as progress:
        report = upload(
            settings,
            open_storage(settings),
            args.directory,
            dest=args.dest,
            jobs=args.jobs,
            dry_run=args.dry_run,
            shard=shard,
            progress=progress,
        )
    return finish(report, args)


def regenerate_command(settings: Settings, args: argparse.Namespace) -> int:
    from resize_sidecar.media.stores import open_storage
    from resize_sidecar.ops.regenerate import Selection, regenerate

    selection = Selection.of(args.spec, args.preset, presets=settings.presets)
    shard = shard_of(args)
    render_as_the_workers_do()
    with BarProgress(args, "derivative") as progress:
        report = regenerate(
            settings,
            open_storage(settings),
            prefix=args.prefix,
            selection=selection,
            jobs=args.jobs,
            delete_stale=args.delete_stale,
            dry_run=args.dry_run,
            shard=shard,
            force=args.force,
            progress=progress,
        )
    return finish(report, args)


def migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    from resize_sidecar.media.stores import open_storage
    from resize_sidecar.ops.migrate import migrate

    shard = shard_of(args)
    with BarProgress(args, "object") as progress:
        report = migrate(
            settings,
            open_storage(settings),
            prefix=args.prefix,
            jobs=args.jobs,
            dry_run=args.dry_run,
            keep_old=args.keep_old,
            delete_unverified=args.delete_unverified,
            shard=shard,
            progress=progress,
        )
    return finish(report, args)


def setup_bucket_command(settings: Settings, args: argparse.Namespace) -> int:
    from resize_sidecar.ops.bucket import BucketPlan, setup_bucket

    if args.redirect_host and not args.website:
        raise SettingsError("--redirect-host: the redirect is a rule of the website, add --website")
    if not args.public_access_block and not args.public_read:
        raise SettingsError("--no-public-access-block: the block is set only with --public-read, add it")
    redirect = args.redirect_host or ""
    if redirect and "://" not in redirect:
        redirect = f"https://{redirect}"
    target = urlsplit(redirect)
    if redirect and (target.scheme not in ("http", "https") or not target.netloc or target.path.strip("/")):
        raise SettingsError(f"--redirect-host: expected a host such as resize.example.com, got {args.redirect_host!r}")
    for origin in args.cors:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(f"--cors: expected an origin such as https://app.example.com or *, got {origin!r}")
    plan = BucketPlan(
        public_read=args.public_read,
        public_access_block=args.public_access_block,
        website=args.website,
        redirect_url=redirect,
        incoming_expiry_days=args.incoming_expiry,
        cors_origins=tuple(args.cors),
    )
    from resize_sidecar.media.s3 import BucketAdmin

    changes = setup_bucket(settings, BucketAdmin(settings, args.bucket), plan, dry_run=args.dry_run)
    unchanged = sum(change.status == "unchanged" for change in changes)
    changed = sum(change.status not in ("unchanged", "unsupported", "skipped", "verified") for change in changes)
    if args.json:
        print(json.dumps({"bucket": args.bucket, "changes": [vars(change) for change in changes]}, indent=2))
        return 0
    for change in changes:
        print(f"{change.status:<13} {change.part}: {change.detail}")
    if args.website and not args.public_read:
        print("note: the website endpoint serves only objects anyone may read (--public-read)", file=sys.stderr)
    summary = f"setup-bucket: {changed} {'to change' if args.dry_run else 'changed'}, {unchanged} unchanged"
    unsupported = [change.part for change in changes if change.status == "unsupported"]
    print(summary + (f", unsupported by this store: {', '.join(unsupported)}" if unsupported else ""))
    return 0


def check_command(settings: Settings, args: argparse.Namespace) -> int:
    from resize_sidecar.media.stores import open_storage
    from resize_sidecar.ops.check import check

    render_as_the_workers_do()
    findings = check(settings, open_storage(settings))
    healthy = all(finding.status != "fail" for finding in findings)
    if args.json:
        print(json.dumps({"healthy": healthy, "findings": [vars(finding) for finding in findings]}, indent=2))
    else:
        for finding in findings:
            print(f"{finding.status:<5} {finding.name:<12} {finding.detail}")
        counts = {status: sum(f.status == status for f in findings) for status in ("ok", "warn", "fail")}
        verdict = "healthy" if healthy else "NOT healthy"
        print(f"check: {verdict} ({counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail)")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
