"""`corosync -c CANDIDATE -t`: corosync's own verdict on a corosync.conf, as findings with lines.

What corosync 3.1.7 does with -t (measured on Debian 12):
- syntax and typed values are checked first; a failure is one stderr line
  `parser error: FILE:LINE: MESSAGE` (a wrong integer, an unknown cipher, a missing brace), whatever
  the file's logging says;
- then the totem and nodelist checks, whose messages go where the file's `logging` section sends
  them (with `to_stderr: no` nothing reaches us). The candidate is therefore tested with a logging
  section appended that sends them to stderr, plain (no timestamp, no syslog, no log file, no
  blackbox): appended at the end, so every line of the file keeps its number, and later keys win
  in corosync; everything else is tested as written;
- among those checks is finding this machine in the nodelist. Where that fails ("No valid name found
  for local host") the file is not wrong: this machine is not one of its nodes (a workstation, CI).
  Syntax and values have then been checked, the later node checks run on the nodes; this is a
  warning saying so, not an error;
- `uidgid.d` is read from the directory of the file: the candidate's temporary directory links to
  the real one (default /etc/corosync/uidgid.d), so its files are checked as on the node.
Exit code 0 means valid; 8 (AIS_DONE_MAINCONFIGREAD) a rejected file.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from controller.cluster.runner import ToolRunner
from controller.desired.findings import Finding
from controller.errors import CommandError

COROSYNC_TEST_TIMEOUT = 30.0

# sends every message of the test to stderr, in a form we parse; appended after the user's file
_LOGGING_TAIL = ("logging {\n\tto_stderr: yes\n\tto_syslog: no\n\tto_logfile: no\n\ttimestamp: off\n"
                 "\tfileline: off\n\tfunction_name: off\n\tblackbox: off\n}\n")
_PARSER = re.compile(r"^parser error: (?P<file>.*?):(?P<line>\d+): (?P<msg>.*)$")
_LOG = re.compile(r"^(?P<sev>emerg|alert|crit|error|warning|notice|info|debug|trace)\s+\[(?P<sys>[^\]]*)\]\s*"
                  r"(?P<msg>.*)$")
_EXITING = re.compile(r"^Corosync Cluster Engine exiting")
NOT_A_NODE = "No valid name found for local host"


def parse_corosync_test(returncode: int, output: str, *, source: str, lines: int, candidate: str,
                        renames: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings from `corosync -t`'s output. `candidate` is the path corosync was given (its lines are
    lines of `source`); `lines` its number of lines: a line past it is in the appended logging
    section (an unclosed section swallowed it), reported as the file's last line. A complaint about
    another file (uidgid.d) names that file, its temporary path mapped back through `renames`."""
    findings: list[Finding] = []
    not_a_node = False
    for raw in output.splitlines():
        text = raw.strip()
        if not text:
            continue
        m = _PARSER.match(text)
        if m and m.group("file") == candidate:
            line = int(m.group("line"))
            findings.append(Finding(severity="error", file=source, line=min(line, lines) or None,
                                    message=f"corosync -t: {m.group('msg')}"))
            continue
        if m:
            other = m.group("file")
            for prefix, real in (renames or {}).items():
                if other.startswith(prefix):
                    other = real + other[len(prefix):]
            findings.append(Finding(severity="error", file=source,
                                    message=f"corosync -t: {other}:{m.group('line')}: {m.group('msg')}"))
            continue
        m = _LOG.match(text)
        if m is None or _EXITING.match(m.group("msg")):
            continue
        msg = m.group("msg")
        if NOT_A_NODE in msg:
            not_a_node = True
        elif m.group("sev") in ("emerg", "alert", "crit", "error"):
            findings.append(Finding(severity="error", file=source, message=f"corosync -t: {msg}"))
        elif m.group("sev") == "warning":
            findings.append(Finding(severity="warning", file=source, message=f"corosync -t: {msg}"))
    if not_a_node and not any(f.severity == "error" for f in findings):
        findings.append(Finding(
            severity="warning", file=source,
            message=f"corosync -t checked syntax and values only: this machine is not a node of this "
                    f"nodelist (corosync: {NOT_A_NODE}); its node checks run on the nodes"))
    elif returncode != 0 and not any(f.severity == "error" for f in findings):
        findings.append(Finding(severity="error", file=source,
                                message=f"corosync -t exited {returncode}: {output.strip() or 'no output'}"))
    return findings


class CorosyncTest:
    """`corosync -t` on candidate text; an instance is a CorosyncCheck for validate_state.
    `conf_dir` is where the node's uidgid.d lives; `runner` may run corosync inside a node (the
    temporary file must then be visible there: pass `workdir` on a path the node shares)."""

    def __init__(self, runner: ToolRunner | None = None, *, conf_dir: Path = Path("/etc/corosync"),
                 workdir: Path | None = None, timeout: float = COROSYNC_TEST_TIMEOUT) -> None:
        self.runner = runner or ToolRunner()
        self.conf_dir = conf_dir
        self.workdir = workdir
        self.timeout = timeout

    def __call__(self, text: str, source: str) -> list[Finding]:
        body = text if not text or text.endswith("\n") else text + "\n"
        lines = body.count("\n")
        with tempfile.TemporaryDirectory(prefix="ha-gitops-corosync-", dir=self.workdir) as tmp:
            candidate = Path(tmp) / "corosync.conf"
            candidate.write_text(body + _LOGGING_TAIL, encoding="utf-8", errors="surrogateescape")
            uidgid = self.conf_dir / "uidgid.d"
            if uidgid.is_dir():
                (Path(tmp) / "uidgid.d").symlink_to(uidgid.resolve())
            try:
                r = self.runner.run(["corosync", "-c", str(candidate), "-t"], timeout=self.timeout,
                                    check=False)
            except CommandError as exc:  # not installed, or it hung: corosync's verdict is missing
                what = "timed out" if exc.timeout else "could not run"
                return [Finding(severity="warning", file=source,
                                message=f"corosync -t {what}, the file was not checked by corosync: "
                                        f"{(exc.stderr or exc.stdout).strip() or ' '.join(exc.argv)}")]
        return parse_corosync_test(r.returncode, r.stderr + "\n" + r.stdout, source=source, lines=lines,
                                   candidate=str(candidate), renames={f"{tmp}/uidgid.d": str(uidgid)})


def local_corosync_check() -> CorosyncTest | None:
    """What `ha-gitops validate` uses: corosync -t when corosync is installed here, else nothing."""
    return CorosyncTest() if shutil.which("corosync") else None
