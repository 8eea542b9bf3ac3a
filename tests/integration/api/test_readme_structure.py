"""The README renders as its authors meant: every table is a table (parsed with a
Markdown parser, not a regex), the table of contents lists every section, every
setting sits in the configuration tables, and the sections an operator needs exist."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from app.settings import Settings
from tests.paths import REPO

README = (REPO / "README.md").read_text()
PARSER = MarkdownIt("commonmark").enable("table")
TOKENS = PARSER.parse(README)
LINES = README.splitlines()


def _table_lines() -> set[int]:
    """0-based README lines that the parser renders inside a table."""
    covered: set[int] = set()
    for token in TOKENS:
        if token.type == "table_open" and token.map:
            covered.update(range(*token.map))
    return covered


def _code_lines() -> set[int]:
    covered: set[int] = set()
    for token in TOKENS:
        if token.type in ("fence", "code_block") and token.map:
            covered.update(range(*token.map))
    return covered


def _sections() -> list[tuple[int, str, int]]:
    """(level, title, line) of every heading."""
    out = []
    for n, token in enumerate(TOKENS):
        if token.type == "heading_open" and token.map:
            out.append((int(token.tag[1]), TOKENS[n + 1].content, token.map[0]))
    return out


def _anchor(title: str) -> str:
    """GitHub's heading anchor."""
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", ""))
    return slug.replace(" ", "-")


def test_every_pipe_row_renders_inside_a_table() -> None:
    tables, code = _table_lines(), _code_lines()
    stray = [
        f"line {n + 1}: {line[:60]}"
        for n, line in enumerate(LINES)
        if line.lstrip().startswith("|") and n not in tables and n not in code
    ]
    assert not stray, "rows that render as plain text:\n" + "\n".join(stray)


def test_the_table_of_contents_lists_every_section() -> None:
    sections = [title for level, title, _ in _sections() if level == 2]
    toc = next(s for s in sections if s.lower() == "contents")
    start = next(line for level, title, line in _sections() if title == toc)
    end = next(line for level, _, line in _sections() if line > start)
    toc_text = "\n".join(LINES[start:end])
    for title in sections:
        if title != toc:
            assert f"(#{_anchor(title)})" in toc_text, title


def test_no_section_appears_twice() -> None:
    titles = [title for level, title, _ in _sections() if level == 2]
    assert len(titles) == len(set(titles)), titles


def test_the_sections_an_operator_needs_exist() -> None:
    titles = {title.lower() for level, title, _ in _sections() if level == 2}
    for needed in (
        "demo",
        "consumer walkthrough",
        "connecting a real ehr",
        "the rules file",
        "operations",
        "troubleshooting",
        "performance",
        "reliability",
        "security model",
        "configuration",
    ):
        assert any(t.startswith(needed) for t in titles), needed


def test_every_setting_is_in_the_configuration_tables() -> None:
    start = next(line for level, title, line in _sections() if title == "Configuration")
    end = next(line for level, _, line in _sections() if line > start and level == 2)
    tables = _table_lines()
    table_text = "\n".join(LINES[n] for n in range(start, end) if n in tables)
    for name, field in Settings.model_fields.items():
        documented = f"`SLOTSYNC_{name.upper()}`"
        if field.validation_alias is not None:
            documented = "`PROMETHEUS_MULTIPROC_DIR`"
        assert documented in table_text, name


def test_a_license_is_there() -> None:
    assert (REPO / "LICENSE").read_text().strip()
