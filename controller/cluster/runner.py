"""Runs cluster tools on one node: locally, or inside a sandbox node through a command prefix."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controller.command import Result, run

Prefix = Sequence[str] | Callable[[], Sequence[str]]


class ToolRunner:
    """`prefix` is prepended to every command (e.g. nsenter into a sandbox node); a callable is
    re-evaluated per call, because a sandbox node's PID changes when it is power-cycled."""

    def __init__(self, prefix: Prefix = (), *, env: Mapping[str, str] | None = None,
                 default_timeout: float = 30.0) -> None:
        self._prefix = prefix
        self.env = dict(env or {})
        self.default_timeout = default_timeout

    def prefix(self) -> list[str]:
        p = self._prefix() if callable(self._prefix) else self._prefix
        return list(p)

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | None = None,
            check: bool = True, ok_codes: Sequence[int] = (0,),
            env: Mapping[str, str] | None = None) -> Result:
        full_env = {**self.env, **(env or {})}  # nsenter passes the environment on to the tool
        return run(self.prefix() + list(argv), timeout=timeout or self.default_timeout, input=input,
                   check=check, ok_codes=ok_codes, env=full_env or None)
