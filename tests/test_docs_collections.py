"""docs/collections.md: its vocabulary table is the one of ``training.data.pathologies``, and it
covers every format of the registry. ``python tests/test_docs_collections.py`` prints the table."""
import re
from pathlib import Path

from training.data.pathologies import SYNONYMS, VOCABULARY
from training.data.spec import FORMAT_NAMES

DOC = Path(__file__).resolve().parents[1] / "docs" / "collections.md"


def vocabulary_table() -> str:
    """One row per output: its name and every other spelling mapped onto it."""
    lines = ["| output | also read as |", "|---|---|"]
    for name in VOCABULARY:
        others = sorted(k for k, v in SYNONYMS.items() if v == name and k != name.lower())
        lines.append(f"| {name} | {', '.join(others)} |")
    return "\n".join(lines)


def test_vocabulary_table_matches_the_code():
    text = DOC.read_text()
    found = re.search(r"<!-- vocabulary:start -->\n(.*?)\n<!-- vocabulary:end -->", text, re.S)
    assert found, "docs/collections.md lost its vocabulary markers"
    assert found.group(1).strip() == vocabulary_table(), (
        "docs/collections.md: the vocabulary table differs from training/data/pathologies.py; "
        "regenerate it with `python tests/test_docs_collections.py`")


def test_every_format_is_documented():
    text = DOC.read_text()
    missing = [name for name in FORMAT_NAMES if f"| `{name}` |" not in text]
    assert not missing, f"docs/collections.md has no row for the formats {missing}"


if __name__ == "__main__":
    print(vocabulary_table())
