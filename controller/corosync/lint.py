"""Static checks of a corosync.conf that corosync itself does not make (pure).

corosync silently ignores keys and sections it does not know, so `tokn: 3000` leaves the token
at its default and a typo'd `totm {` drops the whole totem section (the transport falls back to
knet). These are warnings naming the key, its line and the nearest known name. Errors are what
keeps a node out of the cluster: a node without an address for the transport, a knet node without
a nodeid, nodes on different knet links, and two nodes with the same address, node id (explicit
or derived) or name; `corosync -t` misses the duplicates and the missing address, and on a
machine that is not a node it stops before its own node checks.

The known keys are those of corosync.conf(5) and votequorum(5) of Corosync 3.1.7 (Debian 12) and
corosync-qdevice(8) for quorum.device.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controller.corosync.document import CorosyncDocument, Key, Section
from controller.corosync.model import derived_nodeid

_RING_ADDR = re.compile(r"^ring(\d+)_addr$")


@dataclass(frozen=True)
class _Spec:
    """The keys and subsections a section may hold; `open` sections are not checked inside."""

    keys: frozenset[str] = frozenset()
    sections: dict[str, _Spec] = field(default_factory=dict)
    key_pattern: re.Pattern[str] | None = None
    open: bool = False

    def knows_key(self, key: str) -> bool:
        return key in self.keys or bool(self.key_pattern and self.key_pattern.match(key))


_LOG_COMMON = frozenset({"to_stderr", "to_logfile", "to_syslog", "logfile", "logfile_priority",
                         "syslog_facility", "syslog_priority", "debug"})

_INTERFACE = _Spec(keys=frozenset({
    "linknumber", "ringnumber", "knet_link_priority", "knet_ping_interval", "knet_ping_timeout",
    "knet_ping_precision", "knet_pong_count", "knet_transport", "bindnetaddr", "broadcast", "mcastaddr",
    "mcastport", "ttl"}))

_TOTEM = _Spec(keys=frozenset({
    "version", "clear_node_high_bit", "crypto_model", "crypto_hash", "crypto_cipher", "secauth", "keyfile",
    "key", "link_mode", "netmtu", "transport", "cluster_name", "config_version", "ip_version", "token",
    "token_warning", "token_coefficient", "token_retransmit", "knet_compression_model",
    "knet_compression_threshold", "knet_compression_level", "hold", "token_retransmits_before_loss_const",
    "join", "send_join", "consensus", "merge", "downcheck", "fail_recv_const", "seqno_unchanged_const",
    "heartbeat_failures_allowed", "max_network_delay", "window_size", "max_messages", "miss_count_const",
    "knet_pmtud_interval", "knet_mtu", "block_unlisted_ips", "cancel_token_hold_on_retransmit",
    "cluster_uuid"}),  # cluster_uuid: written by pcs 0.11 for its own use, corosync does not read it
    sections={"interface": _INTERFACE})

_QDEVICE = _Spec(
    keys=frozenset({"model", "timeout", "sync_timeout", "votes"}),
    sections={
        "net": _Spec(keys=frozenset({"tls", "host", "port", "algorithm", "tie_breaker", "connect_timeout",
                                     "force_ip_version", "keep_active_partition_tie_breaker"})),
        "heuristics": _Spec(keys=frozenset({"mode", "timeout", "sync_timeout", "interval"}),
                            key_pattern=re.compile(r"^exec_\S+$")),
    })

SCHEMA = _Spec(sections={
    "totem": _TOTEM,
    "logging": _Spec(keys=_LOG_COMMON | {"timestamp", "fileline", "function_name", "blackbox"},
                     sections={"logger_subsys": _Spec(keys=_LOG_COMMON | {"subsys"})}),
    "quorum": _Spec(keys=frozenset({
        "provider", "expected_votes", "two_node", "wait_for_all", "last_man_standing",
        "last_man_standing_window", "auto_tie_breaker", "auto_tie_breaker_node", "allow_downscale",
        "expected_votes_tracking", "votes"}), sections={"device": _QDEVICE}),
    "nodelist": _Spec(sections={"node": _Spec(keys=frozenset({"nodeid", "name", "quorum_votes"}),
                                              key_pattern=re.compile(r"^ring[0-7]_addr$"))}),
    "system": _Spec(keys=frozenset({"qb_ipc_type", "sched_rr", "priority", "move_to_root_cgroup",
                                    "allow_knet_handle_fallback", "state_dir"})),
    "resources": _Spec(keys=frozenset({"watchdog_device"})),
    "nozzle": _Spec(keys=frozenset({"name", "ipaddr", "ipprefix", "macaddr"})),
    "uidgid": _Spec(keys=frozenset({"uid", "gid"})),
})

# keys of corosync 1/2 that corosync 3 no longer reads, with what replaced them
_REMOVED = {
    "totem.rrp_mode": "removed in corosync 3; with knet, totem.link_mode chooses how links are used",
    "totem.threads": "removed in corosync 3",
    "totem.vsftype": "removed in corosync 3",
    "totem.rrp_problem_count_timeout": "removed in corosync 3",
    "totem.rrp_problem_count_threshold": "removed in corosync 3",
    "totem.rrp_token_expired_timeout": "removed in corosync 3",
    "totem.nodeid": "not read from totem in corosync 3: set nodeid in each nodelist.node",
}


class LintIssue(BaseModel):
    """One problem, at a line of the file. `path` is the dotted key or section (e.g. totem.tokn)."""

    model_config = ConfigDict(frozen=True)

    severity: Literal["error", "warning"]
    line: int | None
    path: str
    message: str


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _walk(section: Section, spec: _Spec, path: str) -> Iterator[LintIssue]:
    known_sections = sorted(spec.sections)
    known_keys = sorted(spec.keys)
    where = path or "the top level"
    for child in section.children:
        if isinstance(child, Key):
            full = f"{path}.{child.key}" if path else child.key
            if spec.knows_key(child.key):
                continue
            if full in _REMOVED:
                yield LintIssue(severity="warning", line=child.line, path=full,
                                message=f"{full}: {_REMOVED[full]}; corosync ignores it")
                continue
            yield LintIssue(severity="warning", line=child.line, path=full,
                            message=f"unknown key {child.key!r} in {where}{_suggest(child.key, known_keys)}; "
                                    "corosync 3.1 ignores it")
        elif isinstance(child, Section):
            full = f"{path}.{child.name}" if path else child.name
            sub = spec.sections.get(child.name)
            if sub is None and path == "quorum.device":
                continue  # a model's own section (quorum.device.<model>), read by that model
            if sub is None:
                yield LintIssue(severity="warning", line=child.line, path=full,
                                message=f"unknown section {child.name!r} in {where}"
                                        f"{_suggest(child.name, known_sections)}; corosync 3.1 ignores "
                                        "it and everything in it")
                continue
            if not sub.open:
                yield from _walk(child, sub, full)


def unknown_keys(doc: CorosyncDocument) -> list[LintIssue]:
    """Keys and sections corosync 3.1 does not know (warnings, with the line and a suggestion)."""
    return list(_walk(doc.root, SCHEMA, ""))


# ---- the nodelist


@dataclass
class _NodeView:
    section: Section
    addrs: dict[int, Key]
    nodeid: Key | None
    name: Key | None


def _nodes(doc: CorosyncDocument) -> list[_NodeView]:
    out = []
    for nl in doc.root.sections("nodelist"):
        for sec in nl.sections("node"):
            addrs: dict[int, Key] = {}
            for key in sec.key_items():
                m = _RING_ADDR.match(key.key)
                if m:
                    addrs[int(m.group(1))] = key  # the last occurrence wins, as in corosync
            out.append(_NodeView(sec, addrs, sec.get_key("nodeid"), sec.get_key("name")))
    return out


def _last_value(doc: CorosyncDocument, section: str, key: str) -> str | None:
    value = None
    for sec in doc.root.sections(section):
        got = sec.get(key)
        if got is not None:
            value = got
    return value


def _address_identity(value: str) -> str:
    """Addresses compare as addresses (10.0.0.01 is not one, ::1 == 0::1), host names case-blind."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value.strip().lower()


def nodelist_problems(doc: CorosyncDocument) -> list[LintIssue]:
    """Errors in the nodelist that keep a node out of the cluster (each naming the lines involved)."""
    nodes = _nodes(doc)
    transport = (_last_value(doc, "totem", "transport") or "knet").lower()
    clear_high_bit = (_last_value(doc, "totem", "clear_node_high_bit") or "no").lower() in ("yes", "on", "1")
    out: list[LintIssue] = []
    for node in nodes:
        line = node.section.line
        if not node.addrs:
            want = "ring0_addr (or another ringX_addr, one per knet link)" if transport == "knet" \
                else f"ring0_addr (transport {transport} has one link, 0)"
            out.append(LintIssue(severity="error", line=line, path="nodelist.node",
                                 message=f"the node at line {line} has no address: set {want}"))
        elif transport != "knet" and 0 not in node.addrs:
            out.append(LintIssue(severity="error", line=line, path="nodelist.node",
                                 message=f"the node at line {line} has no ring0_addr: transport "
                                         f"{transport} uses link 0 only"))
        if transport == "knet" and node.nodeid is None:
            out.append(LintIssue(severity="error", line=line, path="nodelist.node.nodeid",
                                 message=f"the node at line {line} has no nodeid: knet needs an explicit "
                                         "nodeid for every node (corosync.conf(5))"))
    if transport == "knet":
        with_addrs = [n for n in nodes if n.addrs]
        if with_addrs:
            first = with_addrs[0]
            for node in with_addrs[1:]:
                if set(node.addrs) != set(first.addrs):
                    out.append(LintIssue(
                        severity="error", line=node.section.line, path="nodelist.node",
                        message=f"the node at line {node.section.line} is on knet link(s) {_links(node)} but "
                                f"the node at line {first.section.line} on {_links(first)}: every node needs "
                                "an address on the same links"))

    reported: set[int] = set()  # lines already reported as a duplicate address

    def duplicates(what: str, items: list[tuple[str, Key, int]]) -> None:
        seen: dict[str, tuple[Key, int]] = {}
        for identity, key, node_line in items:
            if identity in seen:
                other, other_node_line = seen[identity]
                if other_node_line == node_line:
                    continue  # one node listing the same address on two links is corosync's business
                reported.add(key.line)
                out.append(LintIssue(
                    severity="error", line=key.line, path=f"nodelist.node.{key.key}",
                    message=f"{what} {key.value!r} (line {key.line}) is already used by the node at line "
                            f"{other_node_line} ({other.key}: {other.value}, line {other.line})"))
            else:
                seen[identity] = (key, node_line)

    duplicates("address", [(_address_identity(k.value), k, n.section.line) for n in nodes
                           for _, k in sorted(n.addrs.items())])
    duplicates("name", [(n.name.value, n.name, n.section.line) for n in nodes if n.name is not None])
    ids: list[tuple[str, Key, int]] = []
    for n in nodes:
        if n.nodeid is not None:
            ids.append((n.nodeid.value.strip(), n.nodeid, n.section.line))
        elif 0 in n.addrs:
            derived = derived_nodeid(n.addrs[0].value, clear_high_bit)
            if derived is not None:
                ids.append((str(derived), n.addrs[0], n.section.line))
    seen_ids: dict[str, tuple[Key, int]] = {}
    for identity, key, node_line in ids:
        if identity in seen_ids:
            other, other_line = seen_ids[identity]
            if key.key != "nodeid" and key.line in reported:
                continue  # derived from an address already reported as a duplicate: one error is enough
            out.append(LintIssue(
                severity="error", line=key.line, path="nodelist.node.nodeid",
                message=f"node id {identity} of the node at line {node_line} ({_id_source(key)}, line "
                        f"{key.line}) is already the id of the node at line {other_line} "
                        f"({_id_source(other)}, line {other.line})"))
        else:
            seen_ids[identity] = (key, node_line)
    return out


def _links(node: _NodeView) -> str:
    return ", ".join(str(i) for i in sorted(node.addrs))


def _id_source(key: Key) -> str:
    return f"nodeid: {key.value}" if key.key == "nodeid" else f"derived from {key.key} {key.value}"


def lint_corosync(doc: CorosyncDocument) -> list[LintIssue]:
    return unknown_keys(doc) + nodelist_problems(doc)
