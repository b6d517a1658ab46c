"""Running crm_simulate for the impact prediction (shell): the two scheduler runs, their failures.

The argv is LiveCluster's; what the results mean (parsing, baseline subtraction, the Impact value) is
the pure controller/impact.py. Each run's time budget grows with the CIB (controller/limits.py,
`simulate_budget`); a run past it is a SimulationError naming the budget and the primitives counted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from lxml import etree

from controller.cib.xml import to_bytes
from controller.cluster.adapter import LiveCluster
from controller.cluster.runner import CallRunner, ToolRunner
from controller.command import Result
from controller.command import run as run_command
from controller.errors import CommandError, InputError
from controller.impact import (
    Impact,
    SimulationError,
    predict,
    resource_containers,
    result_root,
    simulation_cib,
)
from controller.limits import TimeBudget, count_primitives, simulate_budget


class ToolRunnerLike(Protocol):
    def run(self, argv: Sequence[str], *, timeout: float | None = ..., input: str | None = ...,
            check: bool = ..., env: Mapping[str, str] | None = ...) -> Result: ...


Runner = Callable[..., Result] | ToolRunnerLike
def _cluster(runner: Runner) -> LiveCluster:
    """The argv is LiveCluster's (controller/cluster/): a plain function or any runner runs it."""
    if isinstance(runner, ToolRunner):
        return LiveCluster(runner)
    return LiveCluster(CallRunner(runner.run if hasattr(runner, "run") else runner))


def _budget(cib: etree._Element, timeout: float | None) -> TimeBudget:
    if timeout is None:
        return simulate_budget(cib)
    # A caller's fixed timeout, described like a budget so the message still names the size.
    return TimeBudget(base=timeout, per_unit=0.0, units=count_primitives(cib),
                      unit="primitives", cap=timeout)


def run_crm_simulate(cib: etree._Element, *, runner: Runner = run_command, scratch_dir: str,
                     what: str, timeout: float | None = None) -> bytes:
    """`crm_simulate --run --xml-pipe --output-as=xml` on cib; returns its XML result (the actions).

    The CIB goes in on stdin so the runner may be inside another mount namespace (a sandbox node).
    crm_simulate keeps a working copy of its input ("shadow.PID"), by default in the live CIB's
    directory: CIB_shadow_dir puts it in scratch_dir instead. timeout None: the CIB's budget.
    """
    budget = _budget(cib, timeout)
    try:
        res = _cluster(runner).simulate(to_bytes(cib, pretty=False).decode(), scratch_dir=scratch_dir,
                                        timeout=budget.seconds)
    except CommandError as exc:
        if exc.timeout is None:
            raise
        raise SimulationError(budget.timeout_message(f"crm_simulate on the {what} CIB")) from exc
    status_msg = ""
    root: etree._Element | None = None
    try:
        root = result_root(res.stdout)
        st = root.find("status")
        if st is not None:
            status_msg = f"{st.get('message')} (code {st.get('code')})"
            errors = [e.text or "" for e in st.iter("error")]
            if errors:
                status_msg += ": " + "; ".join(errors)
    except InputError:
        root = None
    if res.returncode != 0 or root is None:
        detail = res.stderr.strip()
        if len(detail) > 2000:
            detail = detail[:2000] + " ..."
        raise SimulationError(f"crm_simulate on the {what} CIB failed"
                              f" (exit {res.returncode}{', ' + status_msg if status_msg else ''})"
                              + (f": {detail}" if detail else ""))
    return res.stdout.encode()


def simulate(live_cib: etree._Element, proposed: etree._Element, *, runner: Runner = run_command,
             scratch_dir: str | None = None, timeout: float | None = None) -> Impact:
    """Predict the impact of replacing the live configuration with `proposed`.

    live_cib: the live <cib> including <status>; proposed: a <cib> or <configuration>. crm_simulate
    only reads the given XML: it never talks to the cluster. scratch_dir must exist where the
    runner executes (default: a fresh local temporary directory). timeout None: each run gets the
    budget of its CIB's size (controller.limits.simulate_budget).
    """
    test_cib = simulation_cib(live_cib, proposed)
    known = {**resource_containers(live_cib.find("configuration")),
             **resource_containers(test_cib.find("configuration"))}  # removed resources keep a parent
    # The two simulations are independent: run them side by side (each keeps its own shadow.PID file).
    with tempfile.TemporaryDirectory(prefix="ha-gitops-simulate-") as tmp, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm-simulate") as pool:
        where = scratch_dir or tmp
        baseline = pool.submit(run_crm_simulate, live_cib, runner=runner, scratch_dir=where, what="live",
                               timeout=timeout)
        try:
            proposed_out = run_crm_simulate(test_cib, runner=runner, scratch_dir=where, what="proposed",
                                            timeout=timeout)
        except SimulationError:
            baseline.result()  # when both fail, the live CIB's failure is the one to report
            raise
        return predict(proposed_out, baseline.result(), known)
