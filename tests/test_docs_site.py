"""The documentation site (mkdocs.yml) builds in strict mode, and its generated pages are complete.

Strict mode makes every MkDocs warning an error: a docs page missing from the nav, a broken link or
anchor, a griffe docstring warning. The CLI reference is generated from nasforge's argparse parsers
(scripts/cli_reference.py) and the API pages from the docstrings (mkdocstrings), so the checks here
compare the built HTML against the parsers and the packages' `__all__`.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# module that must be importable -> the package that provides it (the `test` extra installs them)
_NEEDED = {
    "mkdocs": "mkdocs",
    "material": "mkdocs-material",
    "mkdocstrings": "mkdocstrings",
    "mkdocstrings_handlers.python": "mkdocstrings-python",
    "mkdocs_include_markdown_plugin": "mkdocs-include-markdown-plugin",
}

# API reference page -> the package it documents
API_PAGES = {
    "spaces": "nasforge.spaces",
    "strategies": "nasforge.strategies",
    "evaluators": "nasforge.evaluators",
    "experiment": "nasforge.experiment",
    "models": "nasforge.models",
    "scaling": "nasforge.scaling",
}


def _missing() -> list[str]:
    out = []
    for module, package in _NEEDED.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            out.append(package)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    missing = _missing()
    if missing:
        pytest.skip(f"the docs build needs {', '.join(missing)} (pip install -e '.[test]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner on stderr
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _page(site: Path, path: str) -> str:
    file = site / path / "index.html" if path else site / "index.html"
    assert file.is_file(), f"{file.relative_to(site)} was not built"
    return file.read_text(encoding="utf-8")


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subparsers(sub)


def test_cli_reference_lists_every_subcommand_and_flag(site):
    from nasforge.cli import build_parser

    html = _page(site, "reference/cli")
    subs = list(_subparsers(build_parser()))
    assert len(subs) >= 10
    for sub in subs:
        name = sub.prog.removeprefix("nasforge ")
        anchor = name.replace(" ", "-")
        assert f'id="{anchor}"' in html, f"no section for `{sub.prog}`"
        section = html.split(f'id="{anchor}"', 1)[1]
        for action in sub._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert option in section, f"`{sub.prog}` lacks {option}"
    assert "glob filter on the names" in html  # help texts are there, not only flags


def _exported(package: str) -> list[str]:
    init = ROOT / "src" / Path(*package.split(".")) / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{package} has no __all__")


@pytest.mark.parametrize("page", sorted(API_PAGES))
def test_api_page_documents_every_exported_name(site, page):
    package = API_PAGES[page]
    html = _page(site, f"reference/api/{page}")
    ids = set(re.findall(r'id="([\w.]+)"', html))
    missing = [name for name in _exported(package) if f"{package}.{name}" not in ids]
    assert not missing, f"reference/api/{page}: not documented: {missing}"


def test_landing_page_is_the_readme_with_working_links(site):
    html = _page(site, "")
    assert 'id="quickstart"' in html and "nasforge run --budget small" in html
    assert 'href="docs/' not in html, "README-relative links were not rewritten for the site"
    assert 'href="strategies/"' in html


def test_every_docs_page_is_built_and_searchable(site):
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    locations = {doc["location"].split("#", 1)[0] for doc in index["docs"]}
    pages = [p.relative_to(ROOT / "docs").with_suffix("").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    pages += ["reference/cli"]  # generated at build time
    for page in pages:
        url = "" if page == "index" else f"{page}/"
        _page(site, url.rstrip("/"))
        assert url in locations, f"{page} is not in the search index"
