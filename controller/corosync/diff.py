"""Key-level diff of two corosync.conf documents, each change classed by how it can be applied.

Classes (corosync 3.1):

``reload``
    ``corosync-cfgtool -R`` applies it on the running cluster. corosync's cfg reload re-reads
    ``logging.``, ``totem.``, ``nodelist.``, ``quorum.`` and ``uidgid.config.`` (exec/cfg.c) and
    drops the entries listed in ``remove_ro_entries``; of ``totem.`` only the "volatile" timing keys
    are acted on (exec/totemconfig.c ``totem_volatile_config_read``); votequorum re-reads
    ``votes``, ``expected_votes``, ``two_node`` and the nodelist (votequorum(5)).
``cluster-restart``
    Every node must run the same value and the key is not reloadable, so the whole cluster must
    be stopped and started together: transport, cluster_name, ip_version, netmtu, every
    ``totem.interface.*`` key (link addressing/ports), the crypto keys, clear_node_high_bit (it
    changes node ids; corosync.conf(5) warns behaviour is undefined when only some nodes have it)
    and the votequorum keys other than votes/expected_votes/two_node (wait_for_all,
    last_man_standing, auto_tie_breaker, provider, device...), which are read at start-up only.
``rolling-restart``
    Everything else: not reloadable, but nodes may differ for a while, so restarting corosync one
    node at a time applies it (threads, system.*, qb.*, resources.*, unknown keys - unknown keys
    land here on purpose: it is the cautious choice that still avoids a full outage).

Paths: sections joined with dots; repeated sections carry a selector naming the matched entry:
``nodelist.node[nodeid=2].ring0_addr`` (else ``[name=..]``, else ``[ring0_addr=..]``),
``totem.interface[linknumber=0].mcastport`` and ``logging.logger_subsys[subsys=QUORUM].debug``;
other repeated sections use their position ``[i]``. Nodes are matched between old and new by
nodeid, then name, then any ringN_addr, then position, so reordering the nodelist is no change.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.corosync.document import CorosyncDocument, Section

ChangeClass = Literal["reload", "rolling-restart", "cluster-restart"]

# totem keys corosync 3.1 re-reads on reload (exec/totemconfig.c totem_volatile_config_read)
RELOADABLE_TOTEM = frozenset({
    "token", "token_coefficient", "token_warning", "token_retransmit", "token_retransmits_before_loss_const",
    "hold", "join", "send_join", "consensus", "merge", "downcheck", "fail_recv_const",
    "seqno_unchanged_const", "max_network_delay", "window_size", "max_messages", "miss_count_const",
    "heartbeat_failures_allowed", "knet_pmtud_interval", "knet_compression_threshold",
    "knet_compression_level", "knet_compression_model", "block_unlisted_ips", "config_version",
})

CLUSTER_RESTART_TOTEM = frozenset({
    "transport", "cluster_name", "ip_version", "netmtu", "clear_node_high_bit",
    "crypto_cipher", "crypto_hash", "crypto_model", "crypto_type", "secauth", "keyfile", "key",
})

# votequorum keys applied on reload; every other quorum.* key needs a cluster restart
RELOADABLE_QUORUM = frozenset({"votes", "expected_votes", "two_node"})

RELOADABLE_PREFIXES = ("logging.", "nodelist.", "uidgid.")


def classify(path: str) -> ChangeClass:
    """The change class of a key path (selectors are ignored: ``nodelist.node[nodeid=1].name``)."""
    plain = re.sub(r"\[[^\]]*\]", "", path)
    if plain.startswith("totem.interface."):
        return "cluster-restart"
    if plain.startswith("totem."):
        key = plain[len("totem."):]
        if key in CLUSTER_RESTART_TOTEM:
            return "cluster-restart"
        if key in RELOADABLE_TOTEM:
            return "reload"
        return "rolling-restart"
    if plain.startswith("quorum."):
        key = plain[len("quorum."):]
        return "reload" if key in RELOADABLE_QUORUM else "cluster-restart"
    if plain.startswith(RELOADABLE_PREFIXES):
        return "reload"
    return "rolling-restart"


class CorosyncChange(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    path: str
    old: str | None
    new: str | None
    change_class: ChangeClass = Field(alias="class")

    def as_dict(self) -> dict[str, str | None]:
        return {"path": self.path, "old": self.old, "new": self.new, "class": self.change_class}


# ---- flattening


def _node_identity(sec: Section) -> str:
    for key in ("nodeid", "name", "ring0_addr"):
        value = sec.get(key)
        if value is not None:
            return f"{key}={value}"
    return ""


def _match_nodes(old: list[Section], new: list[Section]) -> list[tuple[Section | None, Section | None]]:
    pairs: list[tuple[Section | None, Section | None]] = []
    left_old, left_new = list(old), list(new)

    def take(test: object) -> None:
        for o in list(left_old):
            for n in left_new:
                if test(o, n):  # type: ignore[operator]
                    pairs.append((o, n))
                    left_old.remove(o)
                    left_new.remove(n)
                    break

    def same(key: str) -> object:
        return lambda o, n: o.get(key) is not None and o.get(key) == n.get(key)

    def same_addr(o: Section, n: Section) -> bool:
        oa = {v for k, v in o.items().items() if re.fullmatch(r"ring\d+_addr", k)}
        na = {v for k, v in n.items().items() if re.fullmatch(r"ring\d+_addr", k)}
        return bool(oa & na)

    take(same("nodeid"))
    take(same("name"))
    take(same_addr)
    for o, n in zip(list(left_old), list(left_new), strict=False):  # what is left pairs by position
        pairs.append((o, n))
        left_old.remove(o)
        left_new.remove(n)
    pairs.extend((o, None) for o in left_old)
    pairs.extend((None, n) for n in left_new)
    return pairs


def _pair_label(name: str, o: Section | None, n: Section | None, index: int) -> str:
    if name == "node":
        for key in ("nodeid", "name", "ring0_addr"):  # a selector both sides agree on, if any
            if o is not None and n is not None and o.get(key) is not None and o.get(key) == n.get(key):
                return f"{key}={o.get(key)}"
        either = o if o is not None else n
        ident = _node_identity(either) if either is not None else ""
        return ident or str(index)
    return str(index)


_KEYED: dict[str, tuple[str, ...]] = {"interface": ("linknumber", "ringnumber"), "logger_subsys": ("subsys",)}


def _keyed_pairs(name: str, old: list[Section], new: list[Section]) -> list[tuple[str, Section | None,
                                                                                  Section | None]]:
    if name == "node":
        return [(_pair_label(name, o, n, i), o, n) for i, (o, n) in enumerate(_match_nodes(old, new))]
    keys = _KEYED.get(name, ())

    def ident(sec: Section, i: int) -> str:
        for k in keys:
            v = sec.get(k)
            if v is not None:
                return f"{keys[0] if k == 'ringnumber' and name == 'interface' else k}={v}"
        return str(i)

    if keys or len(old) > 1 or len(new) > 1:
        olds = {ident(s, i): s for i, s in enumerate(old)}
        news = {ident(s, i): s for i, s in enumerate(new)}
        labels = list(olds) + [k for k in news if k not in olds]
        return [(label, olds.get(label), news.get(label)) for label in labels]
    return [("", old[0] if old else None, new[0] if new else None)]


def _diff_sections(path: str, old: Section | None, new: Section | None, out: list[CorosyncChange]) -> None:
    old_items = old.items() if old else {}
    new_items = new.items() if new else {}
    for key in list(old_items) + [k for k in new_items if k not in old_items]:
        a, b = old_items.get(key), new_items.get(key)
        if a != b:
            full = f"{path}.{key}" if path else key
            out.append(CorosyncChange(path=full, old=a, new=b, change_class=classify(full)))
    names: list[str] = []
    for sec in (old.sections() if old else []) + (new.sections() if new else []):
        if sec.name not in names:
            names.append(sec.name)
    for name in names:
        olds = old.sections(name) if old else []
        news = new.sections(name) if new else []
        for label, o, n in _keyed_pairs(name, olds, news):
            sub = f"{path}.{name}" if path else name
            if label:
                sub += f"[{label}]"
            _diff_sections(sub, o, n, out)


def diff_corosync(old: CorosyncDocument, new: CorosyncDocument) -> list[CorosyncChange]:
    """Changes from old to new, key by key. Comments, blank lines, indentation and order are no
    change; corosync's own semantics are (a repeated key counts with its last value)."""
    out: list[CorosyncChange] = []
    _diff_sections("", _merge_top(old.root), _merge_top(new.root), out)
    return out


def _merge_top(root: Section) -> Section:
    # corosync merges repeated top-level sections (two "totem {" blocks feed the same keys)
    merged = Section("")
    by_name: dict[str, Section] = {}
    for child in root.children:
        if isinstance(child, Section):
            if child.name not in by_name:
                by_name[child.name] = Section(child.name, line=child.line)
                merged.children.append(by_name[child.name])
            by_name[child.name].children.extend(child.children)
        else:
            merged.children.append(child)
    return merged


def highest_class(changes: list[CorosyncChange]) -> ChangeClass | None:
    """The most disruptive class among changes (None when there are none)."""
    order: list[ChangeClass] = ["reload", "rolling-restart", "cluster-restart"]
    found = [order.index(c.change_class) for c in changes]
    return order[max(found)] if found else None
