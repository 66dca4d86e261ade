"""Where the commands print: results on stdout, errors and warnings on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    """One red line on stderr; the message is printed as text (no markup) and never wrapped."""
    err_console.print(Text.assemble(("error: ", "bold red"), (" ".join(message.split()), "red")),
                      soft_wrap=True)


def print_warning(message: str) -> None:
    """One yellow line on stderr."""
    err_console.print(Text.assemble(("warning: ", "bold yellow"), (message, "yellow")), soft_wrap=True)
