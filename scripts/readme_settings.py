"""Rewrite the configuration table of README.md from streams/core/settings.py (`make readme`)."""

from __future__ import annotations

from pathlib import Path

from streams.core.settings import markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"
text = README.read_text()
start = text.index("\n", text.index("<!-- settings-table")) + 1
end = text.index("<!-- /settings-table -->")
README.write_text(text[:start] + markdown_table() + "\n" + text[end:])
