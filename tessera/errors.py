"""The two kinds of refusal. Every check raises one of them, with a message of one line that names what is
wrong and what is allowed (docs/design.md, "Checks and errors"); both are ValueErrors, which the command
line prints as `error: ...`. The names the modules used before (`ConfigError`, `VideoError`, ...) are
these two under other names, kept where they read better or are imported from outside."""

from __future__ import annotations

import os
from pathlib import Path


class RequestError(ValueError):
    """What was asked for cannot be done: an argument, a flag, a config value, a prompt or a request. The
    message names it, what was given and what is allowed (for sizes and lengths, the nearest valid)."""


class FileError(ValueError):
    """A file or folder that is not what it should be: missing, unreadable, corrupt, or of another kind.
    Raised as `FileError(message)` or `FileError(path, problem)`; `problem` is the message without the
    path, for callers that report it beside the path themselves."""

    def __init__(self, path_or_message: str | os.PathLike, problem: str | None = None) -> None:
        message = str(path_or_message) if problem is None else f"{path_or_message}: {problem}"
        super().__init__(message)
        self.path = None if problem is None else Path(path_or_message)
        self.problem = message if problem is None else problem
