"""The ``resize-sidecar`` command, run as a user runs it (a subprocess), and the Dockerfile that runs it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from resize_sidecar.core.settings import Settings, load
from resize_sidecar.core.signing import parse_path, verify
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.ops.cli import build_parser
from resize_sidecar.ops.nginx import JS_MODULE, SCRIPTS, TEMPLATES
from resize_sidecar.web.app import make_app
from tests.support.dockerfile import dockerfile_instruction
from tests.support.images import photo
from tests.support.in_process import get
from tests.support.servers import REPO, SECRET, debian_like_nginx_conf, nginx_binary, world_readable_dir


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESIZE_SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "resize_sidecar.ops.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_config_defaults_prints_yaml_that_loads_back_to_the_defaults(tmp_path: Path) -> None:
    result = run("config", "--defaults")
    assert result.returncode == 0, result.stderr
    path = tmp_path / "defaults.yaml"
    path.write_text(result.stdout)
    assert load(str(path), environ={}) == Settings()


def test_config_prints_the_effective_settings_with_secrets_masked() -> None:
    result = run("config", RESIZE_SIDECAR_SECRETS="very-secret,older", RESIZE_SIDECAR_QUALITY_JPG="70")
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load(result.stdout)
    assert values["quality_jpg"] == 70
    assert "very-secret" not in result.stdout
    assert len(values["secrets"]) == 2


def test_url_prints_a_path_the_sidecar_verifies() -> None:
    result = run("url", "photos/café 1.jpg", "400x300-fill.webp", RESIZE_SIDECAR_SECRETS=SECRET)
    assert result.returncode == 0, result.stderr
    path = result.stdout.strip()
    assert path.startswith("/media/_r/photos/caf%C3%A9%201.jpg/400x300-fill-")
    verify(parse_path(path), [SECRET])


def test_url_prefixes_the_public_base_url() -> None:
    result = run(
        "url", "a.jpg", "100x.jpg", RESIZE_SIDECAR_SECRETS=SECRET, RESIZE_SIDECAR_PUBLIC_BASE_URL="https://cdn.test/"
    )
    assert result.stdout.startswith("https://cdn.test/media/_r/a.jpg/100x-")


@pytest.mark.parametrize(
    ("args", "env", "answer"),
    [
        pytest.param(("url", "a b.jpg", "100x.auto"), {}, (200, "image/webp", "public"), id="auto"),
        pytest.param(("url", "--private", "a b.jpg", "100x.webp"), {}, (200, "image/webp", 3600), id="private"),
        pytest.param(
            ("url", "--expires-in", "60", "a b.jpg", "thumb.jpg"), {}, (200, "image/jpeg", 60), id="private preset"
        ),
        pytest.param(
            ("url", "--private", "a b.jpg", "100x.webp"),
            {"RESIZE_SIDECAR_PRIVATE_URL_LIFETIME": "7200", "RESIZE_SIDECAR_PUBLIC_BASE_URL": "https://cdn.test/"},
            (200, "image/webp", 7200),
            id="private, the lifetime setting",
        ),
    ],
)
def test_url_prints_auto_and_private_urls_the_sidecar_answers(
    args: tuple[str, ...],
    env: dict[str, str],
    answer: tuple[int, str, str | int],
    make_settings: Callable[..., Settings],
) -> None:
    asked = time.time()
    result = run(*args, RESIZE_SIDECAR_SECRETS=SECRET, RESIZE_SIDECAR_PRESETS="thumb=100x100-fill", **env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.startswith(env.get("RESIZE_SIDECAR_PUBLIC_BASE_URL", "/").rstrip("/") + "/media/_")
    url = urlsplit(result.stdout.strip())
    settings = make_settings(presets={"thumb": "100x100-fill"})
    LocalStorage(Path(settings.local_root)).put("a b.jpg", photo(400, 300), "image/jpeg", "no-cache")
    status, content_type, lifetime = answer
    served = get(make_app(settings), url.path, QUERY_STRING=url.query, HTTP_ACCEPT="image/webp,*/*")
    assert (served.status_int, served.content_type) == (status, content_type), served.text
    if lifetime == "public":
        assert url.path.endswith(".auto") and url.query == ""
        assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        return
    assert url.path.startswith("/media/_p/a%20b.jpg/")
    expires = int(parse_qs(url.query)["expires"][0])
    assert int(asked) + int(lifetime) <= expires <= time.time() + int(lifetime) * 1.1 + 1


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        pytest.param(("url", "a.jpg", "100x.jpg"), {}, "RESIZE_SIDECAR_SECRETS", id="url without a secret"),
        pytest.param(
            ("url", "--private", "a.jpg", "100x.auto"), {"RESIZE_SIDECAR_SECRETS": "s"}, "'auto'", id="private auto"
        ),
        pytest.param(
            ("url", "--expires-in", "0", "a.jpg", "100x.jpg"), {"RESIZE_SIDECAR_SECRETS": "s"}, "1 to", id="lifetime"
        ),
        pytest.param(("url", "a.jpg", "9000x.jpg"), {"RESIZE_SIDECAR_SECRETS": "s"}, "on a side", id="too wide"),
        pytest.param(("url", "a.jpg", "thumb.jpg"), {"RESIZE_SIDECAR_SECRETS": "s"}, "'thumb'", id="unknown preset"),
        pytest.param(("serve",), {}, "RESIZE_SIDECAR_SECRETS", id="serve without a secret"),
        pytest.param(("url", "a.jpg", "100x-fit.jpg"), {"RESIZE_SIDECAR_SECRETS": "s"}, "100x", id="bad spec"),
        pytest.param(("url", "../a.jpg", "100x.jpg"), {"RESIZE_SIDECAR_SECRETS": "s"}, "'..'", id="traversal"),
        pytest.param(("config",), {"RESIZE_SIDECAR_MAX_FRAMES": "many"}, "RESIZE_SIDECAR_MAX_FRAMES", id="bad int"),
        pytest.param(("config",), {"RESIZE_SIDECAR_COLOUR": "red"}, "RESIZE_SIDECAR_COLOUR", id="unknown setting"),
    ],
)
def test_a_mistake_exits_2_with_one_line_naming_it(args: tuple[str, ...], env: dict[str, str], names: str) -> None:
    result = run(*args, **env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert names in result.stderr


def test_the_config_option_reads_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("secrets: [from-file]\nmedia_url: /m/\n")
    result = run("--config", str(path), "url", "a.jpg", "10x.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("/m/_r/a.jpg/10x-")


NGINX_VARIANTS = [
    pytest.param({}, (), id="local"),
    pytest.param({"RESIZE_SIDECAR_SERVE_ORIGINALS": "true"}, ("--app", "http://127.0.0.1:9"), id="local+originals+app"),
    pytest.param(
        {"RESIZE_SIDECAR_STORAGE": "s3", "RESIZE_SIDECAR_S3_BUCKET": "media", "RESIZE_SIDECAR_S3_PREFIX": "site/"},
        (),
        id="s3 on AWS",
    ),
    pytest.param(
        {
            "RESIZE_SIDECAR_STORAGE": "s3",
            "RESIZE_SIDECAR_S3_BUCKET": "media",
            "RESIZE_SIDECAR_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "RESIZE_SIDECAR_SERVE_ORIGINALS": "yes",
        },
        (),
        id="s3 endpoint+originals",
    ),
]


#: Rendering needs a secret: nginx checks every derivative's signature.
SIGNING = {"RESIZE_SIDECAR_SECRETS": "a-secret"}


def test_nginx_is_not_rendered_without_a_secret() -> None:
    result = run("nginx")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "resize-sidecar: RESIZE_SIDECAR_SECRETS (secrets): a secret is required to sign and verify derivative URLs\n"
    )


@pytest.mark.parametrize(("env", "extra"), NGINX_VARIANTS)
def test_the_rendered_nginx_conf_passes_nginx_syntax_check(env: dict[str, str], extra: tuple[str, ...]) -> None:
    nginx = nginx_binary()
    prefix = world_readable_dir("resize-sidecar-nginx-t-")
    media = world_readable_dir("resize-sidecar-media with space-")
    result = run(
        "nginx", "--listen", "127.0.0.1:8080", *extra, RESIZE_SIDECAR_LOCAL_ROOT=str(media), **env, **SIGNING
    )
    assert result.returncode == 0, result.stderr
    config = result.stdout
    if "amazonaws.com" in config:
        # Derivatives at the path the signature check rewrote the URI to.
        assert 'rewrite ^ "/media/site/$resize_derivative" break;' in config
        assert "proxy_pass https://s3.us-east-1.amazonaws.com;" in config
        assert "proxy_set_header Host s3.us-east-1.amazonaws.com;" in config
        # nginx resolves upstream names at start-up, and this machine has no DNS.
        config = config.replace("s3.us-east-1.amazonaws.com", "127.0.0.1")
    (prefix / "nginx.conf").write_text(config)
    check = subprocess.run(
        [nginx, "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr + config


#: S3 settings that would each add a directive (or a variable) to nginx.conf if they were pasted in as they are.
INJECTIONS = [
    pytest.param("RESIZE_SIDECAR_S3_BUCKET", 'media/; } location / { return 200 "owned"; ', id="bucket"),
    pytest.param("RESIZE_SIDECAR_S3_BUCKET", "media$host", id="bucket variable"),
    pytest.param("RESIZE_SIDECAR_S3_PREFIX", 'site"; add_header X-Owned 1; #/', id="prefix"),
    pytest.param("RESIZE_SIDECAR_S3_PREFIX", "a b/", id="prefix with a space"),
    pytest.param("RESIZE_SIDECAR_S3_REGION", "us-east-1;\nload_module /tmp/evil.so", id="region"),
    pytest.param("RESIZE_SIDECAR_S3_ENDPOINT_URL", "http://127.0.0.1:9000;return 200", id="endpoint"),
]
#: Endpoints the renderer would not paste whole (it takes the host and port), refused as settings all the same.
ODD_ENDPOINTS = [
    pytest.param("RESIZE_SIDECAR_S3_ENDPOINT_URL", "http://127.0.0.1:9000/{x}", id="endpoint with a path"),
    pytest.param("RESIZE_SIDECAR_S3_ENDPOINT_URL", "http://user:pass@127.0.0.1:9000", id="endpoint with credentials"),
]


@pytest.mark.parametrize(("name", "value"), INJECTIONS + ODD_ENDPOINTS)
def test_s3_settings_that_could_inject_nginx_directives_are_refused_naming_the_setting(name: str, value: str) -> None:
    env = {"RESIZE_SIDECAR_STORAGE": "s3", "RESIZE_SIDECAR_S3_BUCKET": "media", name: value}
    result = run("nginx", "--listen", "8080", "--s3-auth", "sigv4", **env, **SIGNING)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"resize-sidecar: {name} (")


@pytest.mark.parametrize(("name", "value"), INJECTIONS)
def test_the_renderer_refuses_them_too_when_settings_were_never_validated(name: str, value: str) -> None:
    from resize_sidecar.core.errors import SettingsError
    from resize_sidecar.ops.nginx import render_nginx

    setting = name.removeprefix("RESIZE_SIDECAR_").lower()
    values: dict[str, Any] = {"storage": "s3", "s3_bucket": "media", setting: value}
    settings = Settings(**values, secrets=("s",))  # no validate()
    for auth in ("none", "sigv4"):
        with pytest.raises(SettingsError, match="cannot go into nginx's configuration"):
            render_nginx(settings, listen="8080", sidecar="http://127.0.0.1:8000", s3_auth=auth)


def test_the_snippet_fits_inside_an_existing_server_block_with_its_http_part() -> None:
    nginx = nginx_binary()
    prefix = world_readable_dir("resize-sidecar-nginx-snippet-")
    snippet = run("nginx", "--snippet", "--sidecar", "http://127.0.0.1:8123", **SIGNING)
    http = run("nginx", "--snippet-http", **SIGNING)
    assert (snippet.returncode, http.returncode) == (0, 0), snippet.stderr + http.stderr
    assert "upstream" not in snippet.stdout and "http {" not in snippet.stdout
    assert "proxy_pass http://127.0.0.1:8123$request_uri;" in snippet.stdout
    main = [line.removeprefix("#   ") for line in http.stdout.splitlines() if line.startswith("#   ")]
    assert main == [f"load_module {JS_MODULE};"]
    (prefix / "http.conf").write_text(http.stdout)
    (prefix / "media.conf").write_text(snippet.stdout)
    (prefix / "nginx.conf").write_text(debian_like_nginx_conf(prefix, 8080))
    check = subprocess.run(
        [nginx, "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    without_http = prefix / "nginx.conf"
    without_http.write_text(without_http.read_text().replace(f"include {prefix}/http.conf;", ""))
    check = subprocess.run(
        [nginx, "-t", "-p", f"{prefix}/", "-c", str(without_http), "-e", "stderr"], capture_output=True, text=True
    )
    assert check.returncode == 1 and 'unknown "resize_derivative" variable' in check.stderr


def test_the_scripts_copied_for_another_nginx_are_where_the_configuration_imports_them() -> None:
    """An nginx in another container reads the configuration and the njs scripts from one shared folder."""
    nginx = nginx_binary()
    prefix = world_readable_dir("resize-sidecar-nginx-scripts-")
    scripts = prefix / "njs"  # not there yet: made
    result = run("nginx", "--listen", "127.0.0.1:8080", "--scripts", str(scripts), "--copy-scripts", **SIGNING)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in scripts.iterdir()) == sorted(SCRIPTS)
    assert f"js_import resize_derivatives from {scripts}/derivatives.js;" in result.stdout
    assert str(TEMPLATES) not in result.stdout
    (prefix / "nginx.conf").write_text(result.stdout)
    test = [nginx, "-t", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    check = subprocess.run(test, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    alone = run("nginx", "--copy-scripts", **SIGNING)
    assert (alone.returncode, alone.stdout) == (2, "")
    assert alone.stderr == "resize-sidecar: --copy-scripts: name the folder to copy them into with --scripts DIR\n"


def test_nginx_refuses_a_sidecar_that_is_not_a_url() -> None:
    result = run("nginx", "--sidecar", "localhost:8000")
    assert result.returncode == 2
    assert "--sidecar" in result.stderr


def test_the_dockerfile_runs_the_serve_command_the_readme_documents() -> None:
    command = dockerfile_instruction("CMD")
    assert command[0] == "resize-sidecar"
    build_parser().parse_args(command[1:])  # the CLI accepts it
    assert shlex.join(command) in (REPO / "README.md").read_text()


def test_the_dockerfile_health_check_asks_the_health_route() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "http://127.0.0.1:8000/healthz" in text
    assert "--bind\", \"0.0.0.0:8000\"" in text
    assert re.search(r"^USER (?!root)\S+", text, re.MULTILINE), "the container must not run as root"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        pytest.param(("--preset", "nope"), "unknown preset 'nope' (configured: card, thumb)", id="unknown preset"),
        pytest.param(("--spec", "nope.webp"), "unknown preset 'nope'", id="unknown preset as a spec"),
        pytest.param(("--spec", "400x300-fit.webp"), "400x300", id="spec not canonical"),
        pytest.param(("--spec", "400x300.bmp"), "SPEC.FMT", id="unknown format"),
        pytest.param(("--preset", "400x"), "cannot be a preset name", id="a size as a preset"),
    ],
)
def test_regenerate_of_what_cannot_exist_is_a_mistake(tmp_path: Path, args: tuple[str, ...], names: str) -> None:
    media = tmp_path / "media"
    media.mkdir()
    result = run(
        "regenerate", *args,
        RESIZE_SIDECAR_SECRETS=SECRET, RESIZE_SIDECAR_LOCAL_ROOT=str(media),
        RESIZE_SIDECAR_PRESETS="thumb=200x200-fill,card=600x",
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1
    assert names in result.stderr


def test_regenerate_of_a_configured_preset_runs(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    result = run(
        "regenerate", "--preset", "card",
        RESIZE_SIDECAR_SECRETS=SECRET, RESIZE_SIDECAR_LOCAL_ROOT=str(media), RESIZE_SIDECAR_PRESETS="card=600x",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("regenerate:")


COMMANDS = ("serve", "url", "config", "nginx", "upload", "setup-bucket", "regenerate", "check")


def test_the_top_level_help_is_plain_text_naming_every_command() -> None:
    result = run("--help")
    assert (result.returncode, result.stderr) == (0, "")
    assert "``" not in result.stdout and ":class:" not in result.stdout and ":meth:" not in result.stdout
    for name in COMMANDS:
        assert re.search(rf"^    {name}\b", result.stdout, re.MULTILINE), name
    assert "Exit codes: 0 done, 1 something failed" in " ".join(result.stdout.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_describes_itself_in_its_help(command: str) -> None:
    result = run(command, "--help")
    assert (result.returncode, result.stderr) == (0, "")
    usage, description = result.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: resize-sidecar {command}")
    words = description.split()
    # A summary sentence, then what the command does in more words.
    assert len(words) >= 15 and " ".join(words).count(". ") >= 1, description


def test_version_prints_the_package_version() -> None:
    from resize_sidecar import __version__

    result = run("--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"resize-sidecar {__version__}\n", "")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="no command"),
        pytest.param(("resize",), id="unknown command"),
        pytest.param(("url", "a.jpg"), id="missing argument"),
        pytest.param(("regenerate", "--jobs", "0"), id="bad number"),
        pytest.param(("regenerate", "--spec", "100x.jpg", "--preset", "thumb"), id="exclusive options"),
    ],
)
def test_a_command_line_mistake_exits_2_with_the_usage(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("usage: resize-sidecar")
    assert "error:" in result.stderr
