"""What both fuzz targets share: the atheris command line, seeds from the shared corpus.

A target module defines ``target() -> check``, which imports what it tests and returns ``check(data: bytes)``;
``check`` must return, or raise only what the target allows. The import happens inside atheris' instrumentation,
so that coverage of ``resize_sidecar`` guides the fuzzer (libvips itself is not instrumented). libFuzzer adds new
inputs to the first corpus folder it is given, so seeds are copied into a working folder in the temporary directory:
the shared corpus is read-only, and its files are not to be copied into the project.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

Check = Callable[[bytes], None]

#: Where crashing inputs and the working corpora go (``FUZZ_WORK_DIR``, else a folder in the temporary directory).
WORK = Path(os.environ.get("FUZZ_WORK_DIR") or Path(tempfile.gettempdir()) / "resize-sidecar-fuzz")
#: Options a bounded run gets unless given: a whole-run limit, a per-input limit, a memory limit.
DEFAULTS = ("-max_total_time=60", "-timeout=20", "-rss_limit_mb=3072")


def shared_images() -> Path:
    """The shared corpus folder (``TESTDATA_IMAGES``, else ``../shared/testdata/images`` beside the project)."""
    default = Path(__file__).resolve().parents[3] / "shared/testdata/images"
    return Path(os.environ.get("TESTDATA_IMAGES", default))


def seed_folder(name: str, seeds: Iterable[tuple[str, bytes]]) -> Path:
    """A writable corpus folder holding ``seeds`` (name, bytes), kept across runs so coverage accumulates."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for seed_name, data in seeds:
        if not (folder / seed_name).exists():
            (folder / seed_name).write_bytes(data)
    return folder


def run(
    name: str,
    target: Callable[[], Check],
    seeds: Callable[[], Iterable[tuple[str, bytes]]],
    argv: Sequence[str],
) -> None:
    """Fuzz the target's check with atheris (libFuzzer) for as long as ``argv`` says; exits with its status."""
    import atheris

    with atheris.instrument_imports(include=["resize_sidecar"]):
        check = target()
    options = [arg for arg in argv[1:] if arg.startswith("-")]
    folders = [arg for arg in argv[1:] if not arg.startswith("-")]
    given = {option.split("=", 1)[0] for option in options}
    options += [option for option in DEFAULTS if option.split("=", 1)[0] not in given]
    if "-artifact_prefix" not in given:
        (WORK / "crashes").mkdir(parents=True, exist_ok=True)
        options.append(f"-artifact_prefix={WORK / 'crashes'}/{name}-")
    if not folders:
        folders = [str(seed_folder(name, seeds()))]
    atheris.Setup([argv[0], *options, *folders], check)
    atheris.Fuzz()
