"""The repository's own method notes: every reference to them points at a section that exists,
and nothing cites notes that are not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ROOT / "docs" / "METHODS.md"


def _sources() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("experiments/**/*.yaml")]
    for folder in ("sb3_exec", "experiments", "tests"):
        files += (ROOT / folder).rglob("*.py")
    return files


def test_no_reference_to_notes_outside_the_repository():
    cited = [
        f"{p.relative_to(ROOT)}"
        for p in _sources()
        if p != Path(__file__) and re.search(r"DOMAIN(\.md| notes)", p.read_text())
    ]
    assert cited == []


def test_method_note_references_name_existing_sections():
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", METHODS.read_text(), flags=re.M)}
    assert sections == set(range(1, 8))
    refs = []
    for path in _sources():
        for m in re.finditer(r"METHODS\.md\)?,? sections? ([\d ,and-]+)", path.read_text()):
            for a, b in re.findall(r"(\d+)(?:-(\d+))?", m.group(1)):
                refs += [(path.name, n) for n in range(int(a), int(b or a) + 1)]
    assert len(refs) >= 8  # README, config, the tests of the numbers the notes quote
    assert [r for r in refs if r[1] not in sections] == []
