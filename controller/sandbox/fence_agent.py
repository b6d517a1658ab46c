"""The sandbox's power switch, installed in each node in place of the stonith:external/ssh plugin.

Nodes are namespaces on one host, so "ssh root@node reboot" has no meaning there. The sandbox bind-mounts
this plugin over /usr/lib/stonith/plugins/external/ssh inside every node (never on the host), and it
asks the sandbox's power switch (the supervisor) to really power the target off (every process of the node
killed, its addresses gone) and, for reboot, to start it again. A fence agent that only pretends
(fence_dummy, stonith:null) would leave both sides of a split brain running the VIP.

By default the request goes over the sandbox network (TCP to the switch's address on the bridge), the
way external/ssh reaches its peers: a node whose cable is cut cannot fence anybody. `sandbox up
--fencing-network oob` uses a unix socket instead, which no cut touches: a separate management network.
"""

from __future__ import annotations

# The plugin runs inside a node with the system python3 and nothing of ours importable: stdlib only.
PLUGIN_TEMPLATE = r'''#!/usr/bin/python3
"""stonith:external/ssh in the ha-gitops sandbox: powers sandbox nodes off and on via the supervisor."""
import json, os, socket, sys

SOCK = __SOCK__  # oob: the supervisor's unix socket
SWITCH = __SWITCH__  # cluster network: (address, port) of the switch on the sandbox bridge

def connect():
    if SOCK:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(SOCK)
        return s
    # A cut node's ARP for the switch goes unanswered: it fails in seconds, as ssh to a peer would.
    s = socket.create_connection(SWITCH, timeout=10)
    s.settimeout(60)
    return s

def ask(op, node):
    try:
        s = connect()
    except OSError as exc:
        where = SOCK or "%s:%d" % SWITCH
        return {"ok": False, "error": f"power switch at {where} unreachable: {exc}"}
    try:
        with s, s.makefile("rw") as f:
            f.write(json.dumps({"op": op, "node": node, "origin": socket.gethostname()}) + "\n")
            f.flush()
            return json.loads(f.readline() or '{"ok": false, "error": "no answer"}')
    except OSError as exc:
        return {"ok": False, "error": f"power switch did not answer: {exc}"}

def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    host = sys.argv[2] if len(sys.argv) > 2 else ""
    hosts = os.environ.get("hostlist", "").replace(",", " ").split()
    if cmd == "gethosts":
        print("\n".join(hosts))
        return 0
    if cmd in ("reset", "off", "on"):
        op = {"reset": "reboot", "off": "poweroff", "on": "start"}[cmd]
        resp = ask(op, host)
        if not resp.get("ok"):
            sys.stderr.write(f"sandbox power switch: {resp.get('error')}\n")
            return 1
        return 0
    if cmd == "status":
        return 0 if ask("ping", "").get("ok") else 1
    if cmd == "getconfignames":
        print("hostlist")
        return 0
    if cmd == "getinfo-devid":
        print("ha-gitops sandbox power switch")
        return 0
    if cmd == "getinfo-devname":
        print("ha-gitops sandbox power switch (stands in for external/ssh)")
        return 0
    if cmd == "getinfo-devdescr":
        print("Powers sandbox nodes off and on by killing and restarting their namespaces.")
        return 0
    if cmd == "getinfo-devurl":
        print("https://example.invalid/ha-gitops")
        return 0
    if cmd == "getinfo-xml":
        print('<parameters><parameter name="hostlist" unique="1" required="1">'
              '<content type="string"/><shortdesc lang="en">Hostlist</shortdesc></parameter></parameters>')
        return 0
    return 1

sys.exit(main())
'''


def render_plugin(*, control_socket: str | None = None, switch: tuple[str, int] | None = None) -> str:
    """The plugin for one fencing path: `control_socket` (out of band) or `switch` (the sandbox network)."""
    if (control_socket is None) == (switch is None):
        raise ValueError("one of control_socket or switch")
    return PLUGIN_TEMPLATE.replace("__SOCK__", repr(control_socket or "")).replace("__SWITCH__", repr(switch))
