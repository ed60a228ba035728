"""Drops cut from ../shared/kws (real Speech Commands clips) for the keyword tests.

The audio is copied from ../shared at test time, never committed (CC BY 4.0 / CC BY-SA 4.0)."""

from __future__ import annotations

import csv
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

KWS = Path(__file__).resolve().parents[1].parent / "shared" / "kws"
requires_kws = pytest.mark.skipif(not (KWS / "manifest.csv").is_file(), reason="../shared/kws is not present")


def kws_drop(drop: Path, keyword: str, speakers: int, clips_per_speaker: int, other_words: int) -> list[str]:
    """Copy into ``drop`` the keyword's clips of the first ``speakers`` speakers (by id) with at
    least ``clips_per_speaker`` clips, and ``other_words`` clips of other words (a fixed choice),
    keeping the corpus layout ``<source>/<word>/<speaker>_<n>.flac``. Returns the speakers."""
    with open(KWS / "manifest.csv", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"].startswith("audio/sc_v002_testset/")]
    by_speaker: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row["word"] == keyword:
            by_speaker[row["speaker"]].append(row["path"])
    chosen = [s for s in sorted(by_speaker) if len(by_speaker[s]) >= clips_per_speaker][:speakers]
    paths = [p for s in chosen for p in sorted(by_speaker[s])[:clips_per_speaker]]
    others = sorted(row["path"] for row in rows if row["word"] != keyword)
    paths += others[:: max(1, len(others) // other_words)][:other_words]
    for rel in paths:
        target = drop / Path(rel).relative_to("audio")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(KWS / rel, target)
    return chosen
