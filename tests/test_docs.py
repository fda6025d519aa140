"""The documents a newcomer reads say what the code does."""

from __future__ import annotations

from dataclasses import fields

from resize_sidecar.settings import Settings, _env_name
from tests.servers import REPO


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
