"""Benchmark: `ha-gitops cib diff` (the installed console script, Python startup included) against
`crm_diff -o OLD -n NEW`, on synthetic CIBs of Dummy primitives in groups of 3 with one location
constraint each. Median wall time of N runs, both tools in the same run.

    .venv/bin/python bench/cib_diff_bench.py [--sizes 1000,5000,10000] [--runs 5]

Writes bench/results/cib_diff.md and bench/results/cib_diff.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from controller.command import run

RESULTS = Path(__file__).resolve().parent / "results"
HA_GITOPS = str(Path(sys.executable).with_name("ha-gitops"))
# Let Python cache bytecode, as an installed package has it (a dev shell may set
# PYTHONDONTWRITEBYTECODE, which recompiles every changed module on every run: ~10 ms).
ENV = {"PYTHONDONTWRITEBYTECODE": ""}


def feature_set() -> str:
    empty = etree.fromstring(run(["cibadmin", "--empty"], timeout=30).stdout.encode())
    return empty.get("crm_feature_set", "")


def generate(n: int, fs: str) -> etree._Element:
    """n Dummy primitives, in groups of 3, one location constraint per primitive."""
    cib = etree.Element("cib", {"crm_feature_set": fs, "validate-with": "pacemaker-3.9", "epoch": "10",
                                "num_updates": "0", "admin_epoch": "0"})
    conf = etree.SubElement(cib, "configuration")
    props = etree.SubElement(etree.SubElement(conf, "crm_config"), "cluster_property_set",
                             id="cib-bootstrap-options")
    etree.SubElement(props, "nvpair", id="opt-stonith", name="stonith-enabled", value="false")
    nodes = etree.SubElement(conf, "nodes")
    for i in (1, 2, 3):
        etree.SubElement(nodes, "node", id=str(i), uname=f"node{i}")
    res = etree.SubElement(conf, "resources")
    cons = etree.SubElement(conf, "constraints")
    group = None
    for i in range(n):
        if i % 3 == 0:
            group = etree.SubElement(res, "group", id=f"g{i // 3}")
        rid = f"r{i}"
        p = etree.SubElement(group, "primitive", {"id": rid, "class": "ocf", "provider": "pacemaker",
                                                  "type": "Dummy"})
        ia = etree.SubElement(p, "instance_attributes", id=f"{rid}-ia")
        etree.SubElement(ia, "nvpair", id=f"{rid}-ia-state", name="state", value=f"/run/{rid}.state")
        ma = etree.SubElement(p, "meta_attributes", id=f"{rid}-ma")
        etree.SubElement(ma, "nvpair", id=f"{rid}-ma-tr", name="target-role", value="Started")
        ops = etree.SubElement(p, "operations")
        etree.SubElement(ops, "op", id=f"{rid}-monitor-10s", name="monitor", interval="10s", timeout="20s")
        etree.SubElement(ops, "op", id=f"{rid}-start-0", name="start", interval="0s", timeout="20s")
        etree.SubElement(cons, "rsc_location", id=f"loc-{rid}", rsc=rid, node=f"node{i % 3 + 1}",
                         score=str(i % 100))
    etree.SubElement(cib, "status")
    return cib


def mutate(cib: etree._Element, fraction: float, rng: random.Random) -> etree._Element:
    """Change `fraction` of the primitives (at least one): a value, a score, a new nvpair."""
    new = etree.fromstring(etree.tostring(cib))
    prims = new.findall("configuration/resources/group/primitive")
    count = max(1, int(len(prims) * fraction))
    for k, p in enumerate(rng.sample(prims, count)):
        rid = p.get("id")
        if k % 3 == 0:
            p.find("meta_attributes/nvpair").set("value", "Stopped")
        elif k % 3 == 1:
            new.find(f"configuration/constraints/rsc_location[@id='loc-{rid}']").set("score", "1000")
        else:
            etree.SubElement(p.find("instance_attributes"), "nvpair", id=f"{rid}-ia-fake", name="fake",
                             value="1")
    return new


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    r = run(argv, timeout=600, check=False, env=ENV)
    elapsed = time.perf_counter() - start
    assert r.returncode == 1, (argv, r.returncode, r.stderr[:500])
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    fs = feature_set()
    rng = random.Random(42)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            base = generate(n, fs)
            old = Path(tmp, f"old-{n}.xml")
            old.write_bytes(etree.tostring(base, pretty_print=True))
            for label, fraction in (("1 change", 0.0), ("5% changed", 0.05)):
                new = Path(tmp, f"new-{n}.xml")
                new.write_bytes(etree.tostring(mutate(base, fraction, rng), pretty_print=True))
                ours, theirs = [], []
                timed([HA_GITOPS, "cib", "diff", str(old), str(new)])  # warm-up: caches
                for _ in range(args.runs):  # interleaved, so both see the same machine load
                    ours.append(timed([HA_GITOPS, "cib", "diff", str(old), str(new)]))
                    theirs.append(timed(["crm_diff", "-o", str(old), "-n", str(new)]))
                row = {"primitives": n, "change": label, "bytes": old.stat().st_size,
                       "ha_gitops_s": round(statistics.median(ours), 3),
                       "crm_diff_s": round(statistics.median(theirs), 3), "runs": args.runs}
                row["speedup"] = round(row["crm_diff_s"] / row["ha_gitops_s"], 1)
                rows.append(row)
                print(row, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cib_diff.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# `ha-gitops cib diff` vs `crm_diff -o -n`", "",
             f"Whole-command wall time, median of {args.runs} runs (interleaved, after one warm-up "
             f"run: bytecode and page cache warm), Pacemaker 2.1.5 crm_diff; synthetic CIBs: Dummy "
             f"primitives in groups of 3, one location constraint each.",
             "", "| primitives | file size | change | ha-gitops cib diff (s) | crm_diff (s) | speed-up |",
             "|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['primitives']:,} | {r['bytes'] / 1e6:.1f} MB | {r['change']} | "
                     f"{r['ha_gitops_s']:.3f} | {r['crm_diff_s']:.3f} | {r['speedup']}x |")
    (RESULTS / "cib_diff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
