"""The README stays true to the code: its settings table is the generated one."""

from __future__ import annotations

from pathlib import Path

from streams.core.settings import markdown_table

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /settings-table -->")]
    assert block.strip() == markdown_table(), "regenerate: shopstream settings --markdown"


def test_readme_quick_start_is_two_commands() -> None:
    text = README.read_text()
    quick = text[text.index("## Quick start") : text.index("## What goes in")]
    assert "make demo" in quick and "make test" in quick


def test_readme_points_only_inside_the_repository() -> None:
    """No path outside the checkout, no internal design notes or tracker numbers; every
    relative link names a file that exists."""
    import re

    text = README.read_text()
    assert "../" not in text and "DESIGN.md" not in text
    assert not re.search(r"\bissues? #?\d+", text, re.IGNORECASE)
    root = README.parent
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (root / target).exists(), target
