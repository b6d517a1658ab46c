"""The sandbox's forge: a git server on the sandbox network that the agents follow over ssh or https.

One more namespace, `forge`, with its own address on the sandbox bridge, running Debian's sshd (a `git`
user whose shell is git-shell; the nodes' deploy keys are its authorized_keys, restricted) and Apache
serving the same bare repository over https through git's http backend (a certificate from a CA the
sandbox makes; a token as the basic-auth password). Apache rather than nginx: with mod_cgi it runs
git-http-backend itself, where nginx needs fcgiwrap as a second daemon and socket; TLS and basic auth are
modules of the same process.

Everything lives under <state dir>/forge; the forge's init (forge_init.py) runs the daemons. This module
renders the configuration (pure) and makes the keys, certificates and the repository (`prepare`), and
hands each node its credentials (`install_node_credentials`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

from controller.command import run
from controller.errors import HaGitopsError
from controller.sandbox.topology import (
    AGENT_HOOK_PORT,
    FORGE_GIT_USER,
    FORGE_HTTPS_PORT,
    FORGE_SSH_PORT,
    ForgeRemote,
    ForgeSpec,
    NodeSpec,
    SandboxSpec,
)

ROOT = Path(__file__).resolve().parents[2]  # the checkout the forge's hook imports from
HTTPS_USER = "git"
SSHD = "/usr/sbin/sshd"
APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
GIT_SHELL = "/usr/bin/git-shell"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
# Where a node finds its credentials: its /etc/ha-gitops is <node dir>/etc-ha-gitops (node_init.BIND_DIRS).
NODE_ETC = "/etc/ha-gitops"
NODE_FILES = {"deploy_key": "deploy_key", "known_hosts": "forge_known_hosts", "ca": "forge-ca.crt",
              "token": "git-token", "webhook_secret": "webhook.secret"}


class ForgeError(HaGitopsError):
    pass


class ForgeLayout:
    """The forge's files under the sandbox state dir."""

    def __init__(self, state_root: Path) -> None:
        self.root = state_root / "forge"

    @property
    def repo(self) -> Path:
        return self.root / "cluster.git"

    @property
    def work(self) -> Path:
        return self.root / "work"  # a clone to commit and push from, inside the forge

    @property
    def home(self) -> Path:
        return self.root / "home"  # the git user's home (its .gitconfig)

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def host_key(self) -> Path:
        return self.ssh_dir / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh_dir / "authorized_keys"

    @property
    def sshd_config(self) -> Path:
        return self.ssh_dir / "sshd_config"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.crt"

    @property
    def httpd_conf(self) -> Path:
        return self.root / "httpd.conf"

    @property
    def htpasswd(self) -> Path:
        return self.root / "htpasswd"

    @property
    def token(self) -> Path:
        return self.root / "git-token"

    @property
    def webhook_secret(self) -> Path:
        return self.root / "webhook.secret"

    @property
    def hooks_json(self) -> Path:
        return self.root / "hooks.json"

    @property
    def hooks_log(self) -> Path:
        return self.root / "hooks.log"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"  # the deploy key the sandbox made for each node

    def node_key(self, node: str) -> Path:
        return self.keys_dir / node

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def control_socket(self) -> Path:
        return self.root / "init.sock"

    @property
    def forge_json(self) -> Path:
        return self.root / "forge.json"  # what the forge's init reads: address, daemons' argv


# ------------------------------------------------------------------------------------------ pure parts

def free_id(used: set[int], start: int = 64990) -> int:
    """A uid/gid no account of the host has (the forge's git user exists only inside the forge)."""
    for i in range(start, 1000, -1):
        if i not in used:
            return i
    raise ForgeError("no free uid/gid for the forge's git user")


def forge_passwd(host_passwd: str, uid: int, gid: int, home: Path) -> str:
    """The forge's /etc/passwd: the host's accounts (sshd's privilege separation user among them) and the
    git user, whose shell git-shell allows only git's own commands."""
    lines = [ln for ln in host_passwd.splitlines() if ln and not ln.startswith(f"{FORGE_GIT_USER}:")]
    lines.append(f"{FORGE_GIT_USER}:x:{uid}:{gid}:sandbox forge:{home}:{GIT_SHELL}")
    return "\n".join(lines) + "\n"


def forge_group(host_group: str, gid: int) -> str:
    lines = [ln for ln in host_group.splitlines() if ln and not ln.startswith(f"{FORGE_GIT_USER}:")]
    lines.append(f"{FORGE_GIT_USER}:x:{gid}:")
    return "\n".join(lines) + "\n"


def authorized_key(pubkey: str, node: str) -> str:
    """A deploy key: `restrict` takes away ptys and forwarding; the account's shell (git-shell) allows only
    git-upload-pack, git-receive-pack and git-upload-archive."""
    kind, blob = pubkey.split()[:2]
    return f"restrict {kind} {blob} sandbox-deploy-key-{node}"


def known_hosts(address: str, host_pubkey: str) -> str:
    kind, blob = host_pubkey.split()[:2]
    return f"{address} {kind} {blob}\n"


def render_sshd_config(lay: ForgeLayout, address: str) -> str:
    return "\n".join([
        "# Written by the ha-gitops sandbox: the forge's sshd (git over ssh, deploy keys only).",
        f"ListenAddress {address}:{FORGE_SSH_PORT}",
        f"HostKey {lay.host_key}",
        "PidFile none",
        f"AuthorizedKeysFile {lay.authorized_keys}",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin no",
        f"AllowUsers {FORGE_GIT_USER}",
        "PermitTTY no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "PrintMotd no",
        "LogLevel VERBOSE",
        "",
    ])


def render_httpd_conf(lay: ForgeLayout, address: str) -> str:
    mods = ["mpm_prefork", "authn_core", "authn_file", "authz_core", "authz_user", "auth_basic", "alias",
            "cgi", "env", "ssl", "socache_shmcb"]
    lines = ["# Written by the ha-gitops sandbox: the forge's https (git's http backend, token as password).",
             f"ServerRoot {lay.root}", "ServerName forge", f"Listen {address}:{FORGE_HTTPS_PORT}",
             f"PidFile {lay.run_dir}/httpd.pid", f"DefaultRuntimeDir {lay.run_dir}",
             f"User {FORGE_GIT_USER}", f"Group {FORGE_GIT_USER}",
             f"ErrorLog {lay.logs}/https-error.log", "LogLevel warn"]
    lines += [f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in mods]
    lines += [
        'LogFormat "%h %u %t \\"%r\\" %>s %b" forge',
        f"CustomLog {lay.logs}/https-access.log forge",
        "StartServers 2", "MinSpareServers 1", "MaxSpareServers 4", "MaxRequestWorkers 16",
        "SSLEngine on",
        f"SSLCertificateFile {lay.tls_dir}/server.crt",
        f"SSLCertificateKeyFile {lay.tls_dir}/server.key",
        f"SSLSessionCache shmcb:{lay.run_dir}/ssl_scache(512000)",
        f"SetEnv GIT_PROJECT_ROOT {lay.root}",
        "SetEnv GIT_HTTP_EXPORT_ALL 1",
        # The repository belongs to root, the backend runs as git: safe.directory from the command scope.
        "SetEnv GIT_CONFIG_COUNT 1", "SetEnv GIT_CONFIG_KEY_0 safe.directory", "SetEnv GIT_CONFIG_VALUE_0 *",
        f"ScriptAlias / {GIT_HTTP_BACKEND}/",
        "<Location />",
        "  AuthType Basic",
        '  AuthName "sandbox forge"',
        "  AuthBasicProvider file",
        f"  AuthUserFile {lay.htpasswd}",
        "  Require valid-user",
        "</Location>",
        "",
    ]
    return "\n".join(lines)


def render_post_receive(hooks_json: Path) -> str:
    return (f"#!{sys.executable}\n"
            "# Written by the ha-gitops sandbox: push webhooks to the agents, in the background.\n"
            f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
            "from controller.sandbox.forge_hook import main\n"
            f"sys.exit(main([{str(hooks_json)!r}]))\n")


def hook_targets(spec: SandboxSpec) -> list[str]:
    return [f"http://{n.address}:{AGENT_HOOK_PORT}/hooks/github" for n in spec.nodes]


def agent_transport_toml(forge: ForgeSpec, remote: ForgeRemote, webhooks: bool) -> list[str]:
    """The agent.toml lines that point a node's agent at the forge (ssh or https), with the credentials
    `install_node_credentials` put in its /etc/ha-gitops."""
    etc = {k: f"{NODE_ETC}/{v}" for k, v in NODE_FILES.items()}
    lines = [f"repo_url = {json.dumps(forge.url(remote))}"]
    if remote == "ssh":
        ssh = (f"ssh -i {etc['deploy_key']} -o IdentitiesOnly=yes -o UserKnownHostsFile={etc['known_hosts']} "
               "-o StrictHostKeyChecking=yes -o ConnectTimeout=5")
        lines.append(f"git_ssh_command = {json.dumps(ssh)}")
    else:
        lines += [f"git_ca_file = {json.dumps(etc['ca'])}", f"git_token_file = {json.dumps(etc['token'])}"]
    if webhooks:
        lines += [f"webhook_secret_file = {json.dumps(etc['webhook_secret'])}",
                  f'http_listen = "0.0.0.0:{AGENT_HOOK_PORT}"']
    return lines


# ------------------------------------------------------------------------------------------ effects

def _tool(argv: list[str], *, input: str | None = None, cwd: str | None = None) -> str:
    return run(argv, timeout=60, input=input, cwd=cwd).stdout


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _git_ids() -> tuple[int, int]:
    import grp
    import pwd

    return (free_id({p.pw_uid for p in pwd.getpwall()}), free_id({g.gr_gid for g in grp.getgrall()}))


def check_tools() -> None:
    for tool in (SSHD, APACHE, GIT_SHELL, GIT_HTTP_BACKEND, "ssh-keygen", "openssl", "htpasswd"):
        if shutil.which(tool) is None and not Path(tool).exists():
            raise ForgeError(f"{tool} not found: the sandbox's forge needs openssh-server, apache2, "
                             "apache2-utils and openssl (deploy/install-debian-packages.sh)")


def prepare(state_root: Path, spec: SandboxSpec) -> None:
    """A fresh forge: the bare repository cloned from the seed, the git user, sshd's host key and the
    nodes' deploy keys, the CA and the server certificate, the https token, the webhook secret, the hook."""
    forge = spec.forge
    assert forge is not None
    check_tools()
    lay = ForgeLayout(state_root)
    shutil.rmtree(lay.root, ignore_errors=True)
    for d in (lay.root, lay.ssh_dir, lay.tls_dir, lay.keys_dir, lay.logs, lay.run_dir, lay.home):
        d.mkdir(parents=True, exist_ok=True)
    lay.root.chmod(0o755)
    uid, gid = _git_ids()
    _write(lay.root / "passwd", forge_passwd(Path("/etc/passwd").read_text(), uid, gid, lay.home))
    _write(lay.root / "group", forge_group(Path("/etc/group").read_text(), gid))
    _write(lay.home / ".gitconfig", "[safe]\n\tdirectory = *\n")  # the repository is root's

    _tool(["git", "clone", "-q", "--bare", "--no-local", forge.seed, str(lay.repo)])
    _tool(["git", "--git-dir", str(lay.repo), "config", "receive.denyNonFastForwards", "false"])
    _tool(["git", "--git-dir", str(lay.repo), "config", "receive.denyDeletes", "false"])
    _tool(["git", "clone", "-q", str(lay.repo), str(lay.work)])
    for key, value in (("user.name", "Sandbox Forge"), ("user.email", "forge@sandbox.invalid")):
        _tool(["git", "-C", str(lay.work), "config", key, value])

    _tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sandbox-forge", "-f", str(lay.host_key)])
    keys = []
    for node in spec.nodes:
        node_key = lay.node_key(node.name)
        _tool(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"sandbox-deploy-key-{node.name}",
               "-f", str(node_key)])
        keys.append(authorized_key(Path(f"{node_key}.pub").read_text(), node.name))
    _write(lay.authorized_keys, "\n".join(keys) + "\n")
    _write(lay.sshd_config, render_sshd_config(lay, forge.address))

    make_certificates(lay, forge.address)
    token = secrets.token_urlsafe(24)
    _write(lay.token, token + "\n", 0o600)
    # bcrypt, the token read from stdin: never on a command line.
    _tool(["htpasswd", "-c", "-i", "-B", str(lay.htpasswd), HTTPS_USER], input=token + "\n")
    os.chown(lay.htpasswd, 0, gid)
    lay.htpasswd.chmod(0o640)  # Apache's children (the git user) check the password
    _write(lay.httpd_conf, render_httpd_conf(lay, forge.address))

    _write(lay.webhook_secret, secrets.token_hex(32), 0o600)
    _write(lay.hooks_json, json.dumps({"targets": hook_targets(spec), "secret_file": str(lay.webhook_secret),
                                       "log": str(lay.hooks_log), "pythonpath": str(ROOT)}, indent=1))
    _write(lay.repo / "hooks" / "post-receive", render_post_receive(lay.hooks_json), 0o755)
    _write(lay.forge_json, json.dumps({
        "address": forge.address, "run_dir": str(lay.run_dir), "logs": str(lay.logs),
        "passwd": str(lay.root / "passwd"), "group": str(lay.root / "group"),
        "services": {"ssh": {"argv": [SSHD, "-D", "-e", "-f", str(lay.sshd_config)], "port": FORGE_SSH_PORT},
                     "https": {"argv": [APACHE, "-f", str(lay.httpd_conf), "-DFOREGROUND"],
                               "port": FORGE_HTTPS_PORT}}}, indent=1))


def make_certificates(lay: ForgeLayout, address: str) -> None:
    """The sandbox's CA (its certificate is what the agents trust) and the forge's certificate for its
    address, signed by it."""
    t = lay.tls_dir
    _tool(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", str(t / "ca.key"), "-out", str(lay.ca_cert), "-days", "30", "-subj",
           "/CN=ha-gitops sandbox CA", "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    _tool(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-keyout", str(t / "server.key"), "-out", str(t / "server.csr"), "-subj", "/CN=forge"])
    _write(t / "server.ext", f"subjectAltName=IP:{address}\nbasicConstraints=CA:FALSE\n"
                             "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    _tool(["openssl", "x509", "-req", "-in", str(t / "server.csr"), "-CA", str(lay.ca_cert), "-CAkey",
           str(t / "ca.key"), "-CAcreateserial", "-out", str(t / "server.crt"), "-days", "30",
           "-extfile", str(t / "server.ext")])
    for key in ("ca.key", "server.key"):
        (t / key).chmod(0o600)


def install_node_credentials(state_root: Path, node: NodeSpec, node_etc: Path) -> None:
    """What a node's agent needs to follow the forge, in its own /etc/ha-gitops, all 0600: its deploy key,
    the forge's pinned host key, the CA, the https token and the webhook secret."""
    lay = ForgeLayout(state_root)
    host_pub = Path(f"{lay.host_key}.pub").read_text()
    address = json.loads(lay.forge_json.read_text())["address"]
    files = {
        "deploy_key": lay.node_key(node.name).read_text(),
        "known_hosts": known_hosts(address, host_pub),
        "ca": lay.ca_cert.read_text(),
        "token": lay.token.read_text(),
        "webhook_secret": lay.webhook_secret.read_text(),
    }
    for key, text in files.items():
        _write(node_etc / NODE_FILES[key], text, 0o600)
