"""How long crmsh and crm_simulate take on big configurations: the numbers behind the time budgets.

Generates a 3-node cluster with N `ocf:pacemaker:Dummy` primitives (groups of 4, a location constraint
per group, one clone, a few properties: the shape of desired/kamailio, multiplied), then measures with
the real tools, as the agent runs them:
- crmsh: `crm_to_configuration` (a new `crm` process, no result cache) on the N-primitive cib.crm;
- crm_simulate: `controller.cluster.simulate.simulate` (the live and the proposed run side by side), for
  a commit adding all N to a cluster running none of them, and for one value changed on a cluster
  running them all (each started where the scheduler put it, monitors running, probed elsewhere);
- for N <= 400, one run of the argv the agent used before, `crm_simulate --simulate`.
Also records the file sizes (cib.crm, the converted <configuration>) that the size limits are set
against. Writes bench/results/bounded_work.{json,md}.
Run: `.venv/bin/python bench/bounded_work_bench.py [N ...]` (default 100 200 400 1000 2000 4000).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lxml import etree

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.results_io import now, write  # noqa: E402
from controller.cib.xml import parse_xml_bytes, to_bytes  # noqa: E402
from controller.cluster.simulate import simulate  # noqa: E402
from controller.command import run  # noqa: E402
from controller.desired.crm import crm_to_configuration  # noqa: E402
from controller.limits import crm_budget, simulate_budget  # noqa: E402

NODES = ("node01", "node02", "node03")


def crm_text(primitives: int, marker: str = "") -> str:
    """A cib.crm with `primitives` Dummy primitives in groups of 4, each group placed by a location rule."""
    lines = [f"node {i + 1}: {name}" for i, name in enumerate(NODES)]
    for i in range(primitives):
        lines.append(f"primitive p{i:05d} ocf:pacemaker:Dummy \\\n\tparams fake=v{i}{marker} \\\n"
                     "\top monitor interval=30s timeout=20s \\\n\tmeta migration-threshold=2")
    members = [f"p{i:05d}" for i in range(primitives)]
    for g in range(0, len(members) - 1, 4):
        group = f"g{g // 4:05d}"
        lines.append(f"group {group} {' '.join(members[g:g + 4])}")
        lines.append(f"location l-{group} {group} 100: {NODES[(g // 4) % len(NODES)]}")
    lines.append("primitive fence ocf:pacemaker:Dummy\nclone fence-clone fence")
    lines.append("property cib-bootstrap-options: \\\n\tstonith-enabled=false \\\n\tno-quorum-policy=stop")
    lines.append("rsc_defaults rsc-options: \\\n\tresource-stickiness=100")
    return "\n".join(lines) + "\n"


def fresh_cib(configuration: bytes) -> etree._Element:
    """The whole CIB with the three nodes online and nothing run yet: what a commit adding it all meets."""
    cib = parse_xml_bytes(run(["cibadmin", "--empty"], timeout=30).stdout.encode())
    old = cib.find("configuration")
    assert old is not None
    cib.replace(old, parse_xml_bytes(configuration))
    status = cib.find("status")
    assert status is not None
    for i, name in enumerate(NODES):
        etree.SubElement(status, "node_state", id=str(i + 1), uname=name, in_ccm="true", crmd="online",
                         join="member", expected="member")
    return cib


def running_cib(cib: etree._Element, starts: list[tuple[str, str]]) -> etree._Element:
    """cib with every resource started where the scheduler put it, its monitor running, and probed
    (not running) on the other nodes: the operation history of a settled cluster."""
    cib = copy.deepcopy(cib)
    where = dict(starts)
    prims = {p.get("id", ""): p for p in cib.iter("primitive")}
    call = iter(range(1, 10**7))
    for state in cib.iterfind("status/node_state"):
        resources = etree.SubElement(etree.SubElement(state, "lrm", id=state.get("id", "")), "lrm_resources")
        node = state.get("uname", "")
        for rid, prim in prims.items():
            rsc = etree.SubElement(resources, "lrm_resource", {
                "id": rid, "type": prim.get("type", ""), "class": prim.get("class", ""),
                "provider": prim.get("provider", "")})
            ops = [("start", "0", "0"), ("monitor", "30000", "0")] if where.get(rid) == node else [
                ("monitor", "0", "7")]
            for op, interval, rc in ops:
                etree.SubElement(rsc, "lrm_rsc_op", {
                    "id": f"{rid}_{op}_{interval}", "operation": op,
                    "operation_key": f"{rid}_{op}_{interval}", "interval": interval, "on_node": node,
                    "call-id": str(next(call)), "rc-code": rc, "op-status": "0",
                    "transition-key": "1:1:0:bench", "transition-magic": f"0:{rc};1:1:0:bench",
                    "last-rc-change": "1700000000", "exec-time": "1", "queue-time": "0",
                    "crm_feature_set": "3.16.2"})
    return cib


def timed_simulate(live: etree._Element, proposed: etree._Element) -> tuple[float, list[tuple[str, str]]]:
    t0 = time.perf_counter()
    impact = simulate(live, proposed, timeout=3600)
    return time.perf_counter() - t0, [(r.resource, r.nodes[0]) for r in impact.resources
                                      if r.action == "start" and r.nodes]


def old_argv_seconds(cib: etree._Element) -> float:
    """One run of the argv the agent used before (`--simulate` executes the transition it plans)."""
    with tempfile.TemporaryDirectory(prefix="bounded-bench-") as tmp:
        t0 = time.perf_counter()
        run(["crm_simulate", "--simulate", "--xml-pipe", "--output-as=xml"], timeout=3600, check=False,
            input=to_bytes(cib, pretty=False).decode(), env={"CIB_shadow_dir": tmp})
        return time.perf_counter() - t0


def measure(primitives: int, old_argv: bool) -> dict[str, Any]:
    stamp = str(int(time.time() * 1000) % 10**9)  # a text never converted before: no result cache
    text = crm_text(primitives, marker=stamp)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    conversion = crm_to_configuration(text, use_cache=False)
    crm_s = time.perf_counter() - t0
    crm_rss_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    proposed = parse_xml_bytes(conversion.configuration)
    empty = fresh_cib(conversion.configuration)
    # A commit adding every primitive to a cluster that runs none of them (the 2,000-primitive push)
    nothing = copy.deepcopy(empty)
    for section in ("resources", "constraints"):
        holder = nothing.find(f"configuration/{section}")
        assert holder is not None
        for child in list(holder):
            holder.remove(child)
    add_s, starts = timed_simulate(nothing, proposed)
    # A one-value change on a cluster that runs them all
    live = running_cib(empty, starts)
    changed = copy.deepcopy(proposed)
    nv = changed.find(".//nvpair[@name='resource-stickiness']")
    assert nv is not None
    nv.set("value", "200")
    change_s, _ = timed_simulate(live, changed)
    row: dict[str, Any] = {
        "primitives": primitives,
        "cib_crm_bytes": len(text.encode()),
        "configuration_xml_bytes": len(conversion.configuration),
        "live_cib_with_status_bytes": len(to_bytes(live, pretty=False)),
        "crmsh_seconds": round(crm_s, 2),
        "crmsh_budget_seconds": crm_budget(text).seconds,
        "crmsh_max_rss_mb": round(crm_rss_mb),
        "simulate_add_all_seconds": round(add_s, 2),
        "simulate_change_one_seconds": round(change_s, 2),
        "predicted_starts": len(starts),
        "crm_simulate_budget_seconds": simulate_budget(live).seconds,
    }
    if old_argv:
        proposed_cib = copy.deepcopy(nothing)
        old_conf = proposed_cib.find("configuration")
        assert old_conf is not None
        proposed_cib.replace(old_conf, copy.deepcopy(proposed))
        row["old_argv_add_all_seconds"] = round(old_argv_seconds(proposed_cib), 2)
    return row


def main(sizes: list[int], old_sizes: list[int]) -> dict[str, Any]:
    rows = [measure(n, old_argv=n in old_sizes) for n in sizes]
    result: dict[str, Any] = {"rows": rows, "measured_at": now(), "cpus": os.cpu_count(),
                              "load_average": [round(x, 2) for x in os.getloadavg()]}
    md = ["| primitives | cib.crm | configuration XML | live CIB with status | crmsh | crmsh budget "
          "| crmsh max RSS | crm_simulate, add them all | crm_simulate, change one value "
          "| crm_simulate budget |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['primitives']} | {r['cib_crm_bytes'] / 1024:.0f} KB "
                  f"| {r['configuration_xml_bytes'] / 1024:.0f} KB "
                  f"| {r['live_cib_with_status_bytes'] / 1024:.0f} KB "
                  f"| {r['crmsh_seconds']} s | {r['crmsh_budget_seconds']:g} s | {r['crmsh_max_rss_mb']} MB "
                  f"| {r['simulate_add_all_seconds']} s | {r['simulate_change_one_seconds']} s "
                  f"| {r['crm_simulate_budget_seconds']:g} s |")
    old = [r for r in rows if "old_argv_add_all_seconds" in r]
    if old:
        md += ["", "The argv used before, `crm_simulate --simulate` (it also executes the transition it "
               "plans), adding them all, one run:", "", "| primitives | `--simulate` | `--run` (both runs) |",
               "|---|---|---|"]
        md += [f"| {r['primitives']} | {r['old_argv_add_all_seconds']} s "
               f"| {r['simulate_add_all_seconds']} s |" for r in old]
    md.append("")
    md.append(f"{result['measured_at']}, {result['cpus']}-core machine shared with other work (load "
              f"average {result['load_average'][0]} at the end), on the host, real crmsh and crm_simulate. "
              "crmsh: a new `crm` process, no result cache. crm_simulate: `controller.cluster.simulate`, the "
              "live and the proposed CIB side by side as the agent runs them (`--run`); \"add them all\": "
              "three nodes online running none of them; \"change one value\": every resource started "
              "where the scheduler put it, monitors running, probed elsewhere.")
    write("bounded_work", result, "\n".join(md) + "\n")
    return result


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [100, 200, 400, 1000, 2000, 4000]
    print(json.dumps(main(sizes, old_sizes=[n for n in sizes if n <= 400]), indent=1))
