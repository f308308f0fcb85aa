"""The SQL recipes of docs/queries.md: every ```sql block with the heading above it, and
psql's variable substitution (``:'name'`` a quoted literal, ``:name`` as it is) so that
Python runs them exactly as `psql -v name=value` would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "queries.md"

_HEADING = re.compile(r"^#{2,4}\s+(.+?)\s*$")
_VARIABLE = re.compile(r"(?<!:):(?:'(\w+)'|(\w+))")


@dataclass(frozen=True)
class Recipe:
    title: str  # the heading above the block
    sql: str

    @property
    def variables(self) -> set[str]:
        return {quoted or raw for quoted, raw in _VARIABLE.findall(self.sql)}

    def bind(self, values: dict[str, object]) -> str:
        """The SQL with its psql variables replaced (KeyError: a variable not given)."""

        def value(match: re.Match[str]) -> str:
            quoted, raw = match.group(1), match.group(2)
            if quoted:
                return "'" + str(values[quoted]).replace("'", "''") + "'"
            return str(values[raw])

        return _VARIABLE.sub(value, self.sql)


def recipes(doc: Path = DOC) -> list[Recipe]:
    """Every ```sql block of the page, in order, named by the nearest heading above it."""
    found, title, block = [], "", None
    for line in doc.read_text().splitlines():
        if block is None:
            heading = _HEADING.match(line)
            if heading:
                title = heading.group(1)
            elif line.strip() == "```sql":
                block = []
        elif line.strip() == "```":
            found.append(Recipe(title, "\n".join(block).strip()))
            block = None
        else:
            block.append(line)
    return found
