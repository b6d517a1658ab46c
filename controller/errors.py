"""Errors that reach the user. Each names the file, line or element it is about."""

from __future__ import annotations


class HaGitopsError(Exception):
    """Base of every error the CLI turns into a message and exit code 2."""


class CommandError(HaGitopsError):
    """An external tool failed, timed out or could not be started."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str, stdout: str = "",
                 timeout: float | None = None) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        self.timeout = timeout
        if timeout is not None and returncode is None:
            what = f"timed out after {timeout:g}s"
        elif returncode is None:
            what = "could not be started"
        else:
            what = f"exited {returncode}"
        detail = (stderr or stdout).strip()
        if len(detail) > 2000:
            detail = detail[:2000] + " ..."
        super().__init__(f"{' '.join(self.argv)}: {what}" + (f": {detail}" if detail else ""))


class InputError(HaGitopsError):
    """Bad user input (a desired-state file, an argument); names where the problem is."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 element: str | None = None) -> None:
        self.file = file
        self.line = line
        self.element = element
        where = file or ""
        if line is not None:
            where += f":{line}"
        if element:
            where += f"{' ' if where else ''}({element})"
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)
