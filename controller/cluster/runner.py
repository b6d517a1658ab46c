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


class CallRunner(ToolRunner):
    """A ToolRunner over a `run`-like callable (controller.command.run, a test's fake, another runner's
    bound `run`): lets code that takes either a function or a runner hand LiveCluster a runner."""

    def __init__(self, call: Callable[..., Result]) -> None:
        super().__init__()
        self._call = call

    def run(self, argv: Sequence[str], *, timeout: float | None = None, input: str | None = None,
            check: bool = True, ok_codes: Sequence[int] = (0,),
            env: Mapping[str, str] | None = None) -> Result:
        extra = {} if tuple(ok_codes) == (0,) else {"ok_codes": ok_codes}  # a fake may not take it
        return self._call(list(argv), timeout=timeout or self.default_timeout, input=input, check=check,
                          env=dict(env) if env else None, **extra)
