"""After ``mutmut run``: the mutation score, the surviving mutants, and the floor the score may not fall under.

    python .ci/mutation_score.py FLOOR [PATTERN ...]

The score is killed ÷ checked: a mutant is killed when a test fails (or times out) with it, and survives when every
test passes or no test runs its code. Survivors that docs/mutants.md does not name are listed apart: a new one is
either killed by a test or justified there. Exit status 1 when the score is under FLOOR (a percentage).
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {"killed", "timeout"}
SURVIVED = {"survived", "no tests"}


def outcomes() -> dict[str, str]:
    """Each mutant's name and outcome, from mutmut's own listing (``name: outcome`` a line)."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = (line.strip().rpartition(": ") for line in listing.splitlines() if ": " in line)
    return {name: outcome for name, _, outcome in found}


def main(argv: list[str]) -> int:
    floor, patterns = float(argv[0]), argv[1:] or ["*"]
    checked = {
        name: outcome
        for name, outcome in outcomes().items()
        if outcome in KILLED | SURVIVED and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    }
    if not checked:
        print("no mutant was checked: run mutmut run first", file=sys.stderr)
        return 1
    survivors = sorted(name for name, outcome in checked.items() if outcome in SURVIVED)
    accounted = set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", (ROOT / "docs/mutants.md").read_text()))
    score = 100 * (len(checked) - len(survivors)) / len(checked)
    print(f"mutation score {score:.1f}% ({len(checked) - len(survivors)} of {len(checked)} killed), floor {floor}%")
    for name in survivors:
        print(f"  survived: {name}{'' if name in accounted else '  (not in docs/mutants.md)'}")
    return 0 if score >= floor else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
