"""`ha-gitops notify test`: send one test message to each `[[notify]]` target, now, and say what happened.

The agent's own deliveries go through the outbox and are retried in the background, so a wrong URL shows
only as `failing` in `status` minutes later; an operator wiring up Slack or ntfy wants to know at once.
This sends directly (the same helper process as the agent, controller/notify_send.py), records nothing in
the audit trail, and exits 2 when any target failed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from controller.cli.common import FORMAT_OPTION, handles_errors, main, out, print_json
from controller.cli.operations import CONFIG_OPTION, _settings


@main.group("notify")
def notify_group() -> None:
    """Notification targets ([[notify]] in agent.toml)."""


@notify_group.command("test")
@CONFIG_OPTION
@click.option("--target", "names", multiple=True, metavar="NAME",
              help="Only this target (its name or, unnamed, its key from `status`); repeatable.")
@FORMAT_OPTION
@handles_errors
def notify_test_cmd(config: str | None, names: tuple[str, ...], fmt: str) -> None:
    """Send a test message to every configured target now (nothing is queued or recorded)."""
    from controller.errors import HaGitopsError
    from controller.notifications import Message
    from controller.notify_send import Delivery

    settings = _settings(config)
    targets = list(settings.notify)
    if not targets:
        raise HaGitopsError("no [[notify]] target in the agent settings: nothing to test")
    if names:
        known = {t.key for t in targets}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise HaGitopsError(f"no notify target named {', '.join(unknown)} (configured: "
                                f"{', '.join(t.label for t in targets)})")
        targets = [t for t in targets if t.key in names]
    now = datetime.now(UTC)
    msg = Message(title=f"ha-gitops: test notification from {settings.node_name}",
                  body=f"A test sent by `ha-gitops notify test` on {settings.node_name} at "
                       f"{now:%Y-%m-%d %H:%M:%S} UTC. Nothing happened to the cluster.",
                  type="info")
    results: list[dict[str, str | None]] = []
    for target in targets:
        try:
            error = Delivery(target).send(msg)
        except ValueError as exc:  # url_file unreadable or empty: the message names the file, not a URL
            error = str(exc)
        results.append({"target": target.label, "error": error})
    if fmt == "json":
        print_json({"node": settings.node_name,
                    "results": [{**r, "delivered": r["error"] is None} for r in results]})
    else:
        for r in results:
            out.print(f"{r['target']}: " + ("delivered" if r["error"] is None else f"FAILED: {r['error']}"),
                      markup=False)
    if any(r["error"] is not None for r in results):
        raise SystemExit(2)
