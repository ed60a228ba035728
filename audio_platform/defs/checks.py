"""One shape for the shard checks' results: counts of what is wrong, named in the description.

The UI shows a check's description next to its status, so a failed check says what failed ("3
segments without a transcript") instead of a bare "Failed" that sends the user into metadata.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity


@dataclass(frozen=True)
class Problem:
    key: str
    """The metadata key of the count (kept stable for dashboards and tests)."""
    count: int
    what: str
    """What one counted item is, in plural words: "segments without a transcript"."""


def verdict(
    problems: Sequence[Problem],
    *,
    ok: str,
    metadata: Mapping[str, Any] | None = None,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
) -> AssetCheckResult:
    """Passed when every problem count is 0; the description is ``ok`` then, else each non-zero
    problem as "<count> <what>" (e.g. "2 files missing from the inventory; 1 repeated file")."""
    found = [problem for problem in problems if problem.count]
    return AssetCheckResult(
        passed=not found,
        severity=severity,
        description="; ".join(f"{problem.count} {problem.what}" for problem in found) or ok,
        metadata={**(metadata or {}), **{problem.key: problem.count for problem in problems}},
    )
