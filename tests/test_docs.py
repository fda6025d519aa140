"""The documents a newcomer reads say what the code does."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from resize_sidecar.core.settings import Settings, _env_name
from resize_sidecar.ops.cli import build_parser
from tests.support.servers import REPO, nginx_binary, world_readable_dir


def test_the_readme_documents_every_setting_with_its_doc_line() -> None:
    readme = (REPO / "README.md").read_text()
    for field in fields(Settings):
        assert f"| `{_env_name(field.name)}` |" in readme, f"{_env_name(field.name)} is missing from the README"
        assert field.metadata["doc"] in readme, f"the README's line for {field.name} is out of date"


def test_the_readme_starts_with_the_two_newcomer_commands() -> None:
    head = (REPO / "README.md").read_text()[:2500]
    assert "make demo" in head and "make test" in head
    ci = (REPO / ".ci/run").read_text()
    assert "make test" in ci


def test_the_project_keeps_its_own_design_document() -> None:
    design = (REPO / "docs/design.md").read_text()
    assert "{key}/{spec}-{sig}.{fmt}" in design


def code_blocks(text: str, *languages: str) -> list[str]:
    return [block for language, block in CODE_BLOCK.findall(text) if language in languages]


CODE_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"\n## {title}\n")
    return readme[start : readme.index("\n## ", start + 1)]


def cli_commands(text: str) -> list[str]:
    """Every ``resize-sidecar …`` command in the code blocks and code spans of a text, as it would be typed."""
    lines = []
    for block in code_blocks(text, "sh", "console"):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"(?<!`)`(resize-sidecar [^`]+)`", text)
    commands = []
    for line in lines:
        line = re.sub(r"^\$ ", "", line.strip())
        for part in re.split(r"&&|\|\||;|\|", line.split(" #", 1)[0]):
            words = part.strip()
            words = re.sub(r"^(\w+=\S+ )+", "", words)  # VARIABLE=value before the command
            if words.startswith("resize-sidecar "):
                commands.append(re.sub(r"\s*(>.*|&)$", "", words))
    return commands


def test_every_resize_sidecar_command_in_the_readme_is_one_the_cli_accepts() -> None:
    commands = cli_commands((REPO / "README.md").read_text())
    assert len(commands) >= 15
    for command in commands:
        try:
            build_parser().parse_args(shlex.split(command)[1:])
        except SystemExit as error:  # --help and --version exit 0 once they have printed
            if error.code == 0:
                continue
            raise AssertionError(f"the README's `{command}` is refused ({error.code})") from None


def run_readme_lines(lines: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    """The lines in bash, with ``/srv/`` moved to ``folder`` and the virtualenv's commands first on the PATH."""
    script = "set -euo pipefail\n" + "\n".join(lines).replace("/srv/", f"{folder}/")
    env = {name: value for name, value in os.environ.items() if not name.startswith("RESIZE_SIDECAR_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_run_it_renders_an_nginx_conf_that_nginx_accepts_as_the_readme_runs_it() -> None:
    nginx_binary()
    block = code_blocks(readme_section("Run it"), "sh")[0]
    installs = ("apt-get ", "python3 -m venv", "pip install", "resize-sidecar serve")
    lines = [line for line in block.splitlines() if not line.startswith(installs)]
    assert any(line.startswith("resize-sidecar nginx ") for line in lines), block
    # Everything as written, but nginx only checks the configuration it would run.
    lines = [re.sub(r"^nginx ", "nginx -t ", line) for line in lines]
    result = run_readme_lines(lines, world_readable_dir("resize-sidecar-run-it-"))
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


def test_the_snippet_goes_where_debians_nginx_reads_it_and_passes_nginx_t(tmp_path: Path) -> None:
    nginx = nginx_binary()
    if not Path("/etc/nginx/sites-enabled/default").exists():
        pytest.skip("not Debian's nginx layout: /etc/nginx/sites-enabled/default is missing")
    etc = tmp_path / "etc-nginx"
    shutil.copytree("/etc/nginx", etc)  # Debian's own files, followed where they are links
    conf = etc / "nginx.conf"
    conf.write_text(conf.read_text().replace("/etc/nginx/", f"{etc}/"))
    first, second = code_blocks(readme_section("Run it"), "sh")[:2]
    # The same shell as the block before: its secret.
    exports = [line for line in first.splitlines() if line.startswith("export RESIZE_SIDECAR_SECRETS=")]
    snippet = [line for line in second.splitlines() if "--snippet" in line or line.startswith("chmod ")]
    assert exports and snippet, "Run it renders no snippet"
    result = run_readme_lines(exports + [line.replace("/etc/nginx/", f"{etc}/") for line in snippet], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "include snippets/resize-sidecar.conf;" in readme_section("Run it")
    site = etc / "sites-enabled" / "default"
    site.write_text(
        site.read_text().replace("server_name _;", "server_name _;\n\tinclude snippets/resize-sidecar.conf;", 1)
    )
    check = subprocess.run([nginx, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "location ^~ /media/" in (etc / "snippets" / "resize-sidecar.conf").read_text()


def test_every_make_target_the_readme_names_exists() -> None:
    # In code: a command line of its own, or a code span.
    named = re.findall(r"^make ([a-z-]+)|`(?:\w+=\S+ )*make ([a-z-]+)`", (REPO / "README.md").read_text(), re.MULTILINE)
    targets = {line or span for line, span in named}
    assert {"demo", "test", "bench"} <= targets
    for target in sorted(targets):
        dry_run = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert dry_run.returncode == 0, f"make {target}: {dry_run.stderr}"
