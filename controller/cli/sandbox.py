"""`sandbox ...`: a real cluster on this machine, in Linux namespaces."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from controller.cli.common import (
    FORMAT_OPTION,
    handles_errors,
    main,
    out,
    print_json,
)

# ---- sandbox
SANDBOX_DIR_OPTION = click.option(
    "--state-dir", envvar="HA_GITOPS_SANDBOX_DIR", default=None, metavar="DIR",
    help="Where the sandbox keeps its state [env HA_GITOPS_SANDBOX_DIR; default /var/lib/ha-gitops-sandbox].")


def _sandbox(state_dir: str | None) -> Any:
    from controller.sandbox.manager import Sandbox

    return Sandbox(state_dir)


def _agents_spec(repo: str, branch: str, repo_path: str, agent_config: str | None = None) -> Any:
    from controller.sandbox.agent_config import parse_fragment
    from controller.sandbox.topology import SandboxAgents

    local = Path(repo.removeprefix("file://"))
    url = f"file://{local.resolve()}" if repo.startswith("file://") or local.exists() else repo
    fragment = ""
    if agent_config is not None:
        try:
            fragment = Path(agent_config).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {agent_config}: {exc.strerror or exc}",
                                     param_hint="--agent-config") from exc
        parse_fragment(fragment, agent_config)  # invalid TOML or a sandbox key: said before anything starts
    return SandboxAgents(repo_url=url, branch=branch, path=repo_path, agent_config=fragment,
                         agent_config_source=agent_config or "--agent-config")


AGENT_CONFIG_OPTION = click.option(
    "--agent-config", "agent_config", default=None, metavar="FILE",
    help="With agents: a TOML fragment of agent settings ([[notify]], drift_mode, allowed_signers, ...) "
         "merged into every node's agent.toml, to rehearse production settings. The keys the sandbox sets "
         "per node (node_name, repo_url, branch, path, cache_dir, status_file, service_command) are "
         "refused; [[substitute]] tables are added to the sandbox's own.")


@main.group()
def sandbox() -> None:
    """A real Pacemaker/Corosync cluster on this machine: one set of Linux namespaces per node of the
    desired corosync.conf (needs root)."""


@sandbox.command("up")
@click.option("--cluster", "cluster_dir", default="desired/kamailio", show_default=True,
              type=click.Path(file_okay=False, exists=True), help="Desired cluster folder to model.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for quorum and a DC.")
@click.option("--agents", is_flag=True, help="Start an ha-gitops agent inside every node.")
@click.option("--repo", default=None, metavar="URL", help="With --agents: the git repository to follow.")
@click.option("--branch", default="main", show_default=True, help="With --agents: the branch to follow.")
@click.option("--path", "repo_path", default=".", show_default=True,
              help="With --agents: the cluster folder inside the repository.")
@click.option("--fencing-network", type=click.Choice(["cluster", "oob"]), default="cluster",
              show_default=True,
              help="How fence requests reach the power switch: over the sandbox network (a cut node fences "
                   "nobody), or out of band (a separate management network no cut touches).")
@AGENT_CONFIG_OPTION
@click.option("--forge", is_flag=True,
              help="Add a git server (sshd + https) on the sandbox network, seeded from --repo; with "
                   "--agents the agents follow it instead of --repo.")
@click.option("--remote", type=click.Choice(["ssh", "https"]), default="ssh", show_default=True,
              help="With --forge --agents: how the agents reach the forge (a deploy key and a pinned host "
                   "key, or the sandbox's CA and a token).")
@SANDBOX_DIR_OPTION
@FORMAT_OPTION
@handles_errors
def sandbox_up(cluster_dir: str, timeout: float, agents: bool, repo: str | None, branch: str, repo_path: str,
               fencing_network: str, agent_config: str | None, forge: bool, remote: str,
               state_dir: str | None, fmt: str) -> None:
    """Start one node per corosync nodelist entry; return once quorate with a DC."""
    spec = None
    if agent_config is not None and not agents:
        raise click.UsageError("--agent-config needs --agents")
    if (agents or forge) and not repo:
        raise click.UsageError(f"{'--agents' if agents else '--forge'} needs --repo URL")
    if agents:
        assert repo is not None
        spec = _agents_spec(repo, branch, repo_path, agent_config)
        if forge:
            # The forge's post-receive hook sends every agent a signed push event, as GitHub would.
            spec = spec.model_copy(update={"forge": True, "remote": remote, "webhooks": True})
    result = _sandbox(state_dir).up(cluster_dir, timeout=timeout, agents=spec,
                                    fencing_network="oob" if fencing_network == "oob" else "cluster",
                                    forge_seed=repo if forge else None)
    if fmt == "json":
        print_json(result.model_dump())
        return
    out.print(f"sandbox up: {', '.join(result.nodes)} quorate, DC {result.dc}, "
              f"in {result.seconds:.1f}s (state in {result.state_dir})", markup=False)


@sandbox.command("demo")
@click.option("--cluster", "cluster_dir", default="desired/kamailio", show_default=True,
              type=click.Path(file_okay=False, exists=True))
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_demo(cluster_dir: str, state_dir: str | None) -> None:
    """The whole loop, narrated: agents, initial sync, a commit, drift undone, rollback, audit log."""
    from controller.sandbox.demo import run_demo

    run_demo(cluster_dir, lambda text: out.print(text, markup=False), state_dir)


@sandbox.command("down")
@click.option("--keep-logs", is_flag=True, help="Keep the node logs in the state directory.")
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_down(keep_logs: bool, state_dir: str | None) -> None:
    """Stop every node; leave no process, mount, namespace or veth behind."""
    seconds = _sandbox(state_dir).down(keep_logs=keep_logs)
    out.print(f"sandbox down in {seconds:.2f}s" + (" (logs kept)" if keep_logs else ""), markup=False)


@sandbox.command("status")
@SANDBOX_DIR_OPTION
@FORMAT_OPTION
@handles_errors
def sandbox_status(state_dir: str | None, fmt: str) -> None:
    """Nodes (power, network, services, cluster view), quorum, DC and resources."""
    st = _sandbox(state_dir).status()
    if fmt == "json":
        print_json(st.model_dump())
        return
    if not st.running:
        out.print(f"no sandbox running (state dir {st.state_dir})", markup=False)
        return
    from rich.table import Table

    def yn(v: bool | None) -> str:
        return "-" if v is None else ("yes" if v else "no")

    def agent(n: Any) -> str:
        if n.agent_restart_in is not None:  # systemd's "activating (auto-restart)"
            return f"restart in {n.agent_restart_in:.0f}s"
        return yn(n.agent)

    caption = f"fencing: {st.fencing_network} network, power switch at {st.power_switch}"
    if st.forge is not None:
        f = st.forge
        caption += (f"\nforge at {f.address}: ssh {yn(f.ssh)} ({f.ssh_url}), https {yn(f.https)} "
                    f"({f.https_url}, CA {f.ca_file}); push from {f.work}")
    t = Table(title=f"sandbox {st.cluster_dir}: quorate={yn(st.quorate)} DC={st.dc or '-'}", caption=caption)
    for col in ("node", "address", "nodeid", "power", "network", "corosync", "pacemaker", "agent", "restarts",
                "online", "standby", "DC"):
        t.add_column(col)
    for n in st.nodes:
        t.add_row(n.name, n.address, str(n.nodeid), "on" if n.powered else "off", "cut" if n.cut else "ok",
                  yn(n.corosync), yn(n.pacemaker), agent(n),
                  "-" if n.agent_restarts is None else str(n.agent_restarts), yn(n.cluster_online),
                  yn(n.standby), yn(n.is_dc))
    out.print(t)
    if st.resources:
        rt = Table(title="resources")
        for col in ("resource", "agent", "role", "nodes"):
            rt.add_column(col)
        for r in st.resources:
            rt.add_row(r["id"], r["agent"], r["role"], ", ".join(r["nodes"]))
        out.print(rt)


@sandbox.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", default=300.0, show_default=True)
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_exec(node: str, argv: tuple[str, ...], timeout: float, state_dir: str | None) -> None:
    """Run a command inside NODE (or the forge): `ha-gitops sandbox exec kamailio01 -- crm_mon -1`."""
    import subprocess

    from controller.sandbox.topology import FORGE

    sb = _sandbox(state_dir)
    if node != FORGE:  # the forge is no cluster node, but commands run in it the same way
        sb.spec().node(node)
    # Interactive pass-through: the user's terminal is the command's terminal.
    rc = subprocess.call([*sb.prefix(node), *argv], timeout=timeout)
    sys.exit(rc)


def _node_action(name: str, doc: str, action: Callable[[Any, str], Any]) -> None:
    @sandbox.command(name, help=doc)
    @click.argument("node")
    @SANDBOX_DIR_OPTION
    @handles_errors
    def _cmd(node: str, state_dir: str | None) -> None:
        action(_sandbox(state_dir), node)
        out.print(f"{name} {node}: done", markup=False)


_node_action("poweroff", "Pull the power: kill every process of NODE at once.", lambda sb, n: sb.poweroff(n))
_node_action("start", "Power NODE on (or start its cluster services if they are down).",
             lambda sb, n: sb.start(n))
_node_action("cut", "Unplug NODE from the network (its link stays up; packets go nowhere).",
             lambda sb, n: sb.cut(n))
_node_action("heal", "Plug NODE back into the network.", lambda sb, n: sb.heal(n))


@sandbox.command("kill")
@click.argument("node")
@click.argument("service", type=click.Choice(["corosync", "pacemaker", "agent"]))
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_kill(node: str, service: str, state_dir: str | None) -> None:
    """SIGKILL corosync, all pacemaker daemons, or the agent on NODE (the node stays powered)."""
    r = _sandbox(state_dir).kill(node, service)
    note = ""
    unit = r.get("agent_unit") or {}
    if service == "agent" and unit.get("restart") not in (None, "no"):
        note = f"; restarted in {unit['restart_sec']:g}s (Restart={unit['restart']}, as its systemd unit)"
    out.print(f"killed {service} on {node} (pids {', '.join(map(str, r.get('killed', [])))}){note}",
              markup=False)

# ---- end sandbox


@sandbox.group("agents")
def sandbox_agents() -> None:
    """Start or stop the ha-gitops agents of a running sandbox (e.g. to rehearse adopting a cluster)."""


@sandbox_agents.command("start")
@click.option("--repo", required=True, metavar="URL", help="The git repository to follow.")
@click.option("--branch", default="main", show_default=True, help="The branch to follow.")
@click.option("--path", "repo_path", default=".", show_default=True,
              help="The cluster folder inside the repository.")
@AGENT_CONFIG_OPTION
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_agents_start(repo: str, branch: str, repo_path: str, agent_config: str | None,
                         state_dir: str | None) -> None:
    """One agent per node, as `sandbox up --agents` starts them, on the cluster as it is now."""
    started = _sandbox(state_dir).agents_start(_agents_spec(repo, branch, repo_path, agent_config))
    out.print(f"agents started on {', '.join(started) or 'no node (all powered off)'}", markup=False)


@sandbox_agents.command("stop")
@SANDBOX_DIR_OPTION
@handles_errors
def sandbox_agents_stop(state_dir: str | None) -> None:
    """Stop every node's agent (a clean stop: not restarted); the cluster keeps running."""
    stopped = _sandbox(state_dir).agents_stop()
    out.print(f"agents stopped on {', '.join(stopped) or 'no node'}", markup=False)


@sandbox.group("forge")
def sandbox_forge() -> None:
    """Stop or start the forge's sshd and https server (to rehearse a forge outage)."""


def _forge_action(action: str, doc: str) -> None:
    @sandbox_forge.command(action, help=doc)
    @click.argument("service", type=click.Choice(["ssh", "https", "all"]), default="all")
    @SANDBOX_DIR_OPTION
    @handles_errors
    def _cmd(service: str, state_dir: str | None) -> None:
        _sandbox(state_dir).forge_request(action, service)
        out.print(f"forge {action} {service}: done", markup=False)


_forge_action("stop", "Stop the forge's sshd, its https server, or both (the repository stays).")
_forge_action("start", "Start them again; returns once they accept connections.")
