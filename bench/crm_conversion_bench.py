"""crm syntax -> CIB XML: a new `crm` process per conversion (the CLI) vs the agent's warm crmsh.

Both are crmsh's own `configure load replace` on an empty CIB file; measured in one run, alternating, on
the reference cluster's cib.crm with a value never converted before (so no result cache is involved).
Writes bench/results/crm_conversion.{json,md}. Run: `.venv/bin/python bench/crm_conversion_bench.py [N]`.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.results_io import now, summary, write  # noqa: E402
from controller.desired.crm import crm_to_configuration  # noqa: E402
from controller.desired.crm_worker import WarmCrm  # noqa: E402

TEXT = (REPO_ROOT / "desired" / "kamailio" / "cib.crm").read_text()


def main(rounds: int = 10) -> dict[str, object]:
    warm = WarmCrm()
    started = time.perf_counter()
    warm.start()
    start_s = time.perf_counter() - started
    base = int(time.time()) % 100000 * 100
    crm_to_configuration(TEXT.replace("resource-stickiness=100", f"resource-stickiness={base}"),
                         use_cache=False, runner=warm.run)  # the first conversion fills crmsh's caches
    once: list[float] = []
    kept: list[float] = []
    try:
        for i in range(1, rounds + 1):
            text = TEXT.replace("resource-stickiness=100", f"resource-stickiness={base + i}")
            t0 = time.perf_counter()
            a = crm_to_configuration(text, use_cache=False)
            once.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b = crm_to_configuration(text, use_cache=False, runner=warm.run)
            kept.append(time.perf_counter() - t0)
            assert a.configuration == b.configuration and a.messages == b.messages
    finally:
        warm.close()
    result: dict[str, Any] = {
        "new_process_seconds": summary(once),
        "warm_crmsh_seconds": summary(kept),
        "speedup_median": round(statistics.median(once) / statistics.median(kept), 2),
        "warm_crmsh_start_seconds": round(start_s, 3),
        "rounds": rounds,
        "measured_at": now(),
    }
    write("crm_conversion", result,
        "| conversion of desired/kamailio/cib.crm | median | max |\n|---|---|---|\n"
        f"| new crm process (CLI) | {result['new_process_seconds']['median']} s | "
        f"{result['new_process_seconds']['max']} s |\n"
        f"| agent's warm crmsh | {result['warm_crmsh_seconds']['median']} s | "
        f"{result['warm_crmsh_seconds']['max']} s |\n"
        f"\nSpeed-up {result['speedup_median']}x (medians, {rounds} alternating rounds, identical output "
        f"checked each round); starting the warm crmsh took {result['warm_crmsh_start_seconds']} s. "
        f"{result['measured_at']}, 2-core machine, on the host (not in a sandbox node).\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=1))
