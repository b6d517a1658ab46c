"""Typed view of the corosync.conf keys ha-gitops reasons about (corosync 3.1, votequorum).

Keys not modelled stay available in each model's ``extra`` and in the document itself; the
document, not this model, is what gets rendered back.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.corosync.document import CorosyncDocument, Section, parse_corosync
from controller.errors import InputError

_TRUE = {"yes", "on", "1", "true"}
_FALSE = {"no", "off", "0", "false"}
_RING_ADDR = re.compile(r"^ring(\d+)_addr$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Interface(_Model):
    """totem.interface: one knet link (linknumber) or a corosync 2 ring (ringnumber)."""

    linknumber: int | None = None
    bindnetaddr: str | None = None
    mcastaddr: str | None = None
    mcastport: int | None = None
    ttl: int | None = None
    knet_transport: str | None = None
    knet_link_priority: int | None = None
    knet_ping_interval: int | None = None
    knet_ping_timeout: int | None = None
    line: int = 0
    extra: dict[str, str] = Field(default_factory=dict)


class Totem(_Model):
    version: int | None = None
    cluster_name: str | None = None
    transport: str | None = None  # default knet in corosync 3
    token: int | None = None
    token_coefficient: int | None = None
    consensus: int | None = None
    join: int | None = None
    crypto_cipher: str | None = None
    crypto_hash: str | None = None
    crypto_model: str | None = None
    secauth: str | None = None
    keyfile: str | None = None
    ip_version: str | None = None
    netmtu: int | None = None
    link_mode: str | None = None
    clear_node_high_bit: bool = False
    interfaces: list[Interface] = Field(default_factory=list)
    extra: dict[str, str] = Field(default_factory=dict)


def derived_nodeid(addr: str | None, clear_high_bit: bool = False) -> int | None:
    """corosync's node id for a node without nodeid: its ring0 IPv4 address as a 32-bit number (the high
    bit cleared with totem.clear_node_high_bit); None for a name or an IPv6 address."""
    if addr is None:
        return None
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if ip.version != 4:
        return None
    return int(ip) & 0x7FFFFFFF if clear_high_bit else int(ip)


class Node(_Model):
    """nodelist.node. ``addrs`` maps the ring/link number to ringN_addr."""

    nodeid: int | None = None
    name: str | None = None
    addrs: dict[int, str] = Field(default_factory=dict)
    quorum_votes: int | None = None
    line: int = 0
    extra: dict[str, str] = Field(default_factory=dict)

    @property
    def ring0_addr(self) -> str | None:
        return self.addrs.get(0)

    def effective_nodeid(self, clear_node_high_bit: bool = False) -> int | None:
        """The node id corosync uses: nodeid if set, else (IPv4 only) ring0_addr as a 32-bit
        integer, with the high bit cleared when totem.clear_node_high_bit is yes. A host name or
        IPv6 address without nodeid gives None (corosync would need name resolution / refuses)."""
        if self.nodeid is not None:
            return self.nodeid
        return derived_nodeid(self.ring0_addr, clear_node_high_bit)

    @property
    def votes(self) -> int:
        return 1 if self.quorum_votes is None else self.quorum_votes


class Quorum(_Model):
    provider: str | None = None
    expected_votes: int | None = None
    votes: int | None = None
    two_node: bool | None = None
    wait_for_all: bool | None = None
    last_man_standing: bool | None = None
    last_man_standing_window: int | None = None
    auto_tie_breaker: bool | None = None
    auto_tie_breaker_node: str | None = None
    allow_downscale: bool | None = None
    expected_votes_tracking: bool | None = None
    device: dict[str, Any] | None = None
    providers: list[str] = Field(default_factory=list)  # every provider line seen, to flag duplicates
    sections: int = 0
    line: int = 0
    extra: dict[str, str] = Field(default_factory=dict)


class LoggerSubsys(_Model):
    subsys: str | None = None
    debug: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)


class Logging(_Model):
    to_syslog: bool | None = None
    to_stderr: bool | None = None
    to_logfile: bool | None = None
    logfile: str | None = None
    debug: str | None = None  # on/off/trace
    timestamp: str | None = None
    fileline: bool | None = None
    function_name: bool | None = None
    syslog_facility: str | None = None
    logger_subsys: list[LoggerSubsys] = Field(default_factory=list)
    extra: dict[str, str] = Field(default_factory=dict)


class CorosyncConf(_Model):
    """The typed corosync.conf. Build it with ``corosync_model(doc)`` or ``load_corosync(text)``."""

    source: str = "corosync.conf"
    totem: Totem = Field(default_factory=Totem)
    nodes: list[Node] = Field(default_factory=list)
    quorum: Quorum = Field(default_factory=Quorum)
    logging: Logging = Field(default_factory=Logging)
    nodelist_line: int = 0

    def node_ids(self) -> dict[int, Node]:
        out: dict[int, Node] = {}
        for node in self.nodes:
            nid = node.effective_nodeid(self.totem.clear_node_high_bit)
            if nid is not None:
                out[nid] = node
        return out

    def total_votes(self) -> int:
        return sum(n.votes for n in self.nodes)


# ---- conversion from the document


class _Reader:
    """Typed getters that report the line of a bad value."""

    def __init__(self, section: Section, source: str, path: str) -> None:
        self.section = section
        self.source = source
        self.path = path
        self.used: set[str] = set()

    def text(self, key: str) -> str | None:
        self.used.add(key)
        return self.section.get(key)

    def integer(self, key: str) -> int | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            return int(value, 10)
        except ValueError:
            raise InputError(f"{self.path}.{key} must be an integer, got {value!r}", file=self.source,
                             line=self._line(key)) from None

    def flag(self, key: str) -> bool | None:
        value = self.text(key)
        if value is None:
            return None
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise InputError(f"{self.path}.{key} must be yes/no, on/off or 1/0, got {value!r}",
                         file=self.source, line=self._line(key))

    def extra(self) -> dict[str, str]:
        return {k: v for k, v in self.section.items().items() if k not in self.used}

    def _line(self, key: str) -> int | None:
        found = self.section.get_key(key)
        return found.line if found else None


def _interface(sec: Section, source: str) -> Interface:
    r = _Reader(sec, source, "totem.interface")
    link = r.integer("linknumber")
    ring = r.integer("ringnumber")
    return Interface(linknumber=link if link is not None else ring, bindnetaddr=r.text("bindnetaddr"),
                     mcastaddr=r.text("mcastaddr"), mcastport=r.integer("mcastport"), ttl=r.integer("ttl"),
                     knet_transport=r.text("knet_transport"),
                     knet_link_priority=r.integer("knet_link_priority"),
                     knet_ping_interval=r.integer("knet_ping_interval"),
                     knet_ping_timeout=r.integer("knet_ping_timeout"), line=sec.line, extra=r.extra())


def _totem(sections: list[Section], source: str) -> Totem:
    if not sections:
        return Totem()
    merged = Section("totem", children=[c for s in sections for c in s.children])
    r = _Reader(merged, source, "totem")
    return Totem(
        version=r.integer("version"), cluster_name=r.text("cluster_name"), transport=r.text("transport"),
        token=r.integer("token"), token_coefficient=r.integer("token_coefficient"),
        consensus=r.integer("consensus"),
        join=r.integer("join"), crypto_cipher=r.text("crypto_cipher"), crypto_hash=r.text("crypto_hash"),
        crypto_model=r.text("crypto_model"), secauth=r.text("secauth"), keyfile=r.text("keyfile"),
        ip_version=r.text("ip_version"), netmtu=r.integer("netmtu"), link_mode=r.text("link_mode"),
        clear_node_high_bit=bool(r.flag("clear_node_high_bit")),
        interfaces=[_interface(s, source) for s in merged.sections("interface")], extra=r.extra())


def _node(sec: Section, source: str) -> Node:
    r = _Reader(sec, source, "nodelist.node")
    addrs: dict[int, str] = {}
    for key, value in sec.items().items():
        m = _RING_ADDR.match(key)
        if m:
            r.used.add(key)
            addrs[int(m.group(1))] = value
    return Node(nodeid=r.integer("nodeid"), name=r.text("name"), addrs=addrs,
                quorum_votes=r.integer("quorum_votes"), line=sec.line, extra=r.extra())


def _quorum(sections: list[Section], source: str) -> Quorum:
    if not sections:
        return Quorum()
    merged = Section("quorum", children=[c for s in sections for c in s.children])
    r = _Reader(merged, source, "quorum")
    providers = [k.value for k in merged.key_items() if k.key == "provider"]
    device_secs = merged.sections("device")
    device: dict[str, Any] | None = None
    if device_secs:
        device = _section_dict(device_secs[-1])
    return Quorum(
        provider=r.text("provider"), expected_votes=r.integer("expected_votes"), votes=r.integer("votes"),
        two_node=r.flag("two_node"), wait_for_all=r.flag("wait_for_all"),
        last_man_standing=r.flag("last_man_standing"),
        last_man_standing_window=r.integer("last_man_standing_window"),
        auto_tie_breaker=r.flag("auto_tie_breaker"), auto_tie_breaker_node=r.text("auto_tie_breaker_node"),
        allow_downscale=r.flag("allow_downscale"), expected_votes_tracking=r.flag("expected_votes_tracking"),
        device=device, providers=providers, sections=len(sections), line=sections[0].line, extra=r.extra())


def _section_dict(sec: Section) -> dict[str, Any]:
    out: dict[str, Any] = dict(sec.items())
    for child in sec.sections():
        out.setdefault(child.name, [])
        out[child.name].append(_section_dict(child))
    return out


def _logging(sections: list[Section], source: str) -> Logging:
    if not sections:
        return Logging()
    merged = Section("logging", children=[c for s in sections for c in s.children])
    r = _Reader(merged, source, "logging")
    subs = []
    for s in merged.sections("logger_subsys"):
        sr = _Reader(s, source, "logging.logger_subsys")
        subs.append(LoggerSubsys(subsys=sr.text("subsys"), debug=sr.text("debug"), extra=sr.extra()))
    return Logging(
        to_syslog=r.flag("to_syslog"), to_stderr=r.flag("to_stderr"), to_logfile=r.flag("to_logfile"),
        logfile=r.text("logfile"), debug=r.text("debug"), timestamp=r.text("timestamp"),
        fileline=r.flag("fileline"), function_name=r.flag("function_name"),
        syslog_facility=r.text("syslog_facility"), logger_subsys=subs, extra=r.extra())


def corosync_model(doc: CorosyncDocument) -> CorosyncConf:
    """The typed model of a parsed document. Bad values raise InputError with their line."""
    root = doc.root
    nodes: list[Node] = []
    nodelists = root.sections("nodelist")
    for nl in nodelists:
        nodes.extend(_node(s, doc.source) for s in nl.sections("node"))
    return CorosyncConf(
        source=doc.source, totem=_totem(root.sections("totem"), doc.source), nodes=nodes,
        quorum=_quorum(root.sections("quorum"), doc.source),
        logging=_logging(root.sections("logging"), doc.source),
        nodelist_line=nodelists[0].line if nodelists else 0)


def load_corosync(text: str | bytes, source: str = "corosync.conf") -> tuple[CorosyncDocument, CorosyncConf]:
    doc = parse_corosync(text, source=source)
    return doc, corosync_model(doc)
