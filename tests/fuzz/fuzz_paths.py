"""Fuzz target: the derivative path parser raises only MalformedPathError or BadSignatureError.

    python tests/fuzz/fuzz_paths.py -max_total_time=60 [libFuzzer options] [CORPUS_FOLDER ...]

Each input is a raw request path (bytes as latin-1, which is how gunicorn hands ``RAW_URI`` over). It goes
through ``parse_path``, ``resolve_spec`` and ``verify``; besides raising nothing else, a path that passes all
three must be exactly what ``format_path`` writes for its key, spec and format: only the canonical spelling of a
signed URL is ever accepted (FAULTS row 2).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import Check, run  # noqa: E402

SECRETS = ("fuzz-secret-0123456789abcdef", "fuzz-older-secret")
PRESETS = {"thumb": "120x120-fill", "hero": "1600x-q70"}


def target() -> Check:
    from resize_sidecar.core.errors import BadSignatureError, MalformedPathError
    from resize_sidecar.core.settings import Settings
    from resize_sidecar.core.signing import format_path, parse_path, resolve_spec, verify

    settings = Settings(secrets=SECRETS, presets=PRESETS)

    def check(data: bytes) -> None:
        raw = data.decode("latin-1")
        try:
            path = parse_path(raw, media_url=settings.media_url, derived_prefix=settings.derived_prefix)
        except (MalformedPathError, BadSignatureError):
            return
        try:
            resolve_spec(path.spec, settings.preset_specs)
            spec_ok = True
        except MalformedPathError:
            spec_ok = False
        try:
            verify(path, SECRETS)
        except BadSignatureError:
            return
        if spec_ok:
            spellings = {format_path(path.key, path.spec, path.fmt, secret) for secret in SECRETS}
            if raw not in spellings:
                raise AssertionError(f"{raw!r} verified but is not the canonical spelling {sorted(spellings)}")

    return check


def seeds() -> Iterator[tuple[str, bytes]]:
    from resize_sidecar.core.signing import format_path

    keys = ["photos/cat.jpg", "albums/café déjà vu/été 2024.jpg", "odd/a+b %25 & c; ~d=e,f!.jpg", "x"]
    specs = ["300x", "200x200-fill-sm-q70", "0x0", "x120-up", "64x64-pad-bgff00aa-blur5-sharp", *PRESETS]
    for n, (key, spec) in enumerate((key, spec) for key in keys for spec in specs):
        fmt = ("jpg", "webp", "png", "avif", "gif")[n % 5]
        yield f"valid-{n}", format_path(key, spec, fmt, SECRETS[n % 2]).encode("latin-1")
    hostile = ["/media/_r/a/../b.jpg/100x-", "/media/_r/a%2Fb.jpg/100x-", "/media/_r/caf%c3%a9.jpg/100x-"]
    for n, prefix in enumerate(hostile):
        yield f"hostile-{n}", (prefix + "0" * 32 + ".jpg").encode("latin-1")


if __name__ == "__main__":
    run("paths", target, seeds, sys.argv)
