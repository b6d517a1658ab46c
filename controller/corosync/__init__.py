"""corosync.conf: lossless parse/render and edits, the typed model, the key-level diff."""

from controller.corosync.diff import CorosyncChange, classify, diff_corosync, highest_class
from controller.corosync.document import CorosyncDocument, Key, Section, parse_corosync, render_corosync
from controller.corosync.model import CorosyncConf, Node, Quorum, Totem, corosync_model, load_corosync

__all__ = [
    "CorosyncChange", "CorosyncConf", "CorosyncDocument", "Key", "Node", "Quorum", "Section", "Totem",
    "classify", "corosync_model", "diff_corosync", "highest_class", "load_corosync", "parse_corosync",
    "render_corosync",
]
