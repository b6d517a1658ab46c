"""What every benchmark does with its numbers: summarise a series, write results/NAME.json and .md."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def summary(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, max and every value of a series of seconds."""
    return {"median": round(statistics.median(values), digits), "max": round(max(values), digits),
            "all": [round(v, digits) for v in values]}


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def write(name: str, result: dict[str, Any], markdown: str) -> None:
    """bench/results/NAME.json (the numbers) and NAME.md (the table quoted in notes)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
