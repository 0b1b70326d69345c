"""README.md and docs/*.md link no file outside the repository: every relative link resolves inside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
OUTSIDE = re.compile(r"(?<![\w/.])\.\./[\w./-]+")  # a ../path written out, linked or not


def test_relative_links_resolve_inside_the_repository():
    bad = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # https:, mailto:, in-page anchors
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}")
        bad += [f"{doc.relative_to(ROOT)}: {m}" for m in OUTSIDE.findall(text)]
    assert not bad, bad


def test_the_check_sees_links():
    assert LINK.findall("see [a](docs/A.md) and [b](https://x.org)") == ["docs/A.md", "https://x.org"]
    assert OUTSIDE.findall("read `../shared/x.md` or ../y") == ["../shared/x.md", "../y"]
