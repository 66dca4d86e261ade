"""Find the program in a model's reply, fixing the reference's extraction bugs (docs/method.md §2.4).

The reference only recognises ```` ```python ```` fences, turns a truncated (unterminated) fence into an empty
program and otherwise executes the raw reply, prose included. Here:

1. the first fenced block tagged python/py/python3 (any case) wins; failing that, the first untagged one.
   ```` ``` ```` and ``~~~`` fences are recognised, at any indentation;
2. an unterminated fence (a reply cut at the token limit) yields everything after its opening line;
3. with no usable fence, the whole reply is used if it parses as Python, else the longest parseable run of
   lines starting at a ``def``/``class``/``import``/``from``/``@`` line is salvaged;
4. otherwise there is no code (`Extraction.code is None`) and the model is told so; an empty program is never
   run silently.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

NO_CODE_FEEDBACK = "No Python code found in your reply. Return your solution in a ```python code block."
#: A stop string that ends a reply at the close of its first fenced block (a fence line followed by a newline;
#: an opening fence carries a language tag, ```` ```python ````). Only the first block is read (rule 1), so
#: what follows it is never used; backends drop the stop string, and `restore_closing_fence` puts it back.
CODE_BLOCK_END = "\n```\n"

_OPENING_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_PYTHON_TAGS = {"python": "fenced-python", "python3": "fenced-python", "py": "fenced-py"}
_CODE_START = re.compile(r"^[ \t]*(?:(?:async[ \t]+)?def\b|class\b|import\b|from\b|@\w)")


@dataclass(frozen=True, slots=True)
class Extraction:
    """What `extract_code` found. ``method`` says how (for statistics); ``note`` says why, for humans.

    Methods: ``fenced-python``, ``fenced-py``, ``fenced-bare``, ``unterminated-fence``, ``unfenced``,
    ``salvaged``, ``none`` (then ``code`` is None).
    """

    code: str | None
    method: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class _Block:
    tag: str  # first word of the info string, lower-cased; "" for a bare fence
    body: str
    terminated: bool

    @property
    def is_python(self) -> bool:
        return self.tag in _PYTHON_TAGS


def extract_code(reply: str) -> Extraction:
    """The program in reply (see the module docstring for the rules, in priority order)."""
    text = reply.replace("\r\n", "\n")
    if not text.strip():
        return Extraction(None, "none", "empty reply")
    blocks = _fenced_blocks(text)
    fenced = _from_blocks(blocks)
    if fenced is not None:
        return fenced
    if _is_program(text):
        return Extraction(_clean(text), "unfenced", "no code block; the whole reply parses as Python")
    salvaged = _salvage(text.split("\n"))
    if salvaged is not None:
        return salvaged
    if any((block.is_python or block.tag == "") and not block.body for block in blocks):
        return Extraction(None, "none", "the code block is empty")
    return Extraction(None, "none", "no Python code block, and no Python program in the reply")


def _from_blocks(blocks: list[_Block]) -> Extraction | None:
    """The first non-empty python-tagged block, else the first usable untagged one, else None."""
    tagged = [block for block in blocks if block.is_python and block.body]
    # An unterminated bare fence is often a stray closing fence with prose after it: take it if it parses.
    bare = [block for block in blocks
            if block.tag == "" and block.body and (block.terminated or _is_program(block.body))]
    for block in tagged[:1] or bare[:1]:
        if not block.terminated:
            return Extraction(block.body, "unterminated-fence",
                              "no closing fence (reply truncated?); took everything after the opening fence")
        method = _PYTHON_TAGS.get(block.tag, "fenced-bare")
        count = sum(1 for other in blocks if other.is_python or other.tag == "")
        return Extraction(block.body, method, f"first usable of {count} code block(s)" if count > 1 else "")
    return None


def restore_closing_fence(reply: str, finish_reason: str, stop: Sequence[str]) -> str:
    """A reply that generation stopped at `CODE_BLOCK_END`, with its closing fence back (backends drop stop
    strings), so that the conversation the model sees next holds a complete block."""
    if CODE_BLOCK_END not in stop or finish_reason != "stop":
        return reply
    blocks = _fenced_blocks(reply.replace("\r\n", "\n"))
    return reply + "\n```" if blocks and not blocks[-1].terminated else reply


def _fenced_blocks(text: str) -> list[_Block]:
    """Every fenced block in reading order (CommonMark-like: the closer repeats the opener's character at
    least as many times, on a line of its own); a fence left open runs to the end of the reply."""
    lines = text.split("\n")
    blocks = []
    index = 0
    while index < len(lines):
        opening = _OPENING_FENCE.match(lines[index])
        if opening is None or (opening["fence"][0] == "`" and "`" in opening["info"]):
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = _closing_line(lines, index + 1, fence)
        body_lines = lines[index + 1:closing]
        if closing is None:
            closing, body_lines = _glued_closing(body_lines, fence, index + 1)
        body = "\n".join(_unindent(line, indent) for line in body_lines)
        words = opening["info"].split()
        blocks.append(_Block(words[0].lower() if words else "", _clean(body), closing is not None))
        if closing is None:
            break
        index = closing + 1
    return blocks


def _closing_line(lines: list[str], start: int, fence: str) -> int | None:
    closer = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
    return next((i for i in range(start, len(lines)) if closer.match(lines[i])), None)


def _glued_closing(body_lines: list[str], fence: str, first: int) -> tuple[int | None, list[str]]:
    """A closing fence glued to the end of a code line (``return x```), which models sometimes write.

    Returns the closing line's index and the body without the fence, or (None, body_lines) if there is none.
    """
    for offset, line in enumerate(body_lines):
        code = line.rstrip()
        if code.endswith(fence) and code.rstrip(fence[0]).strip():
            return first + offset, [*body_lines[:offset], code.rstrip(fence[0])]
    return None, body_lines


def _unindent(line: str, width: int) -> str:
    """Remove up to width leading blanks: the body of an indented fence is indented with it."""
    stripped = line.lstrip(" \t")
    return line[min(width, len(line) - len(stripped)):]


def _salvage(lines: list[str]) -> Extraction | None:
    """The longest parseable run of lines from the first code-like line that yields a program.

    Conservative: a run must start at a def/class/import/from/decorator line, stay at or right of that
    line's indentation, and parse; a syntax error cuts the run just before the offending line.
    """
    for start, line in enumerate(lines):
        if not _CODE_START.match(line):
            continue
        region_end = _indented_region_end(lines, start)
        code = _longest_parseable_prefix(lines[start:region_end])
        if code is not None:
            return Extraction(code, "salvaged", f"unfenced code taken from line {start + 1} of the reply")
    return None


def _indented_region_end(lines: list[str], start: int) -> int:
    """End of the run of lines that are blank or indented at least as deep as lines[start]."""
    indent = lines[start][:len(lines[start]) - len(lines[start].lstrip(" \t"))]
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(indent)):
        end += 1
    return end


def _longest_parseable_prefix(lines: list[str]) -> str | None:
    """Shrink lines from the end, guided by each syntax error's line, until they form a program."""
    end = len(lines)
    while end > 0:
        code = _clean(textwrap.dedent("\n".join(lines[:end])))
        error_line = _syntax_error_line(code)
        if error_line is None:
            return code if _is_program(code) else None
        # Lines lost by _clean's strip of leading blank lines do not matter: the first line is a code line.
        end = min(end - 1, error_line - 1)
    return None


def _syntax_error_line(code: str) -> int | None:
    """1-based line of code's syntax error, or None if it parses."""
    try:
        ast.parse(code)
    except SyntaxError as error:
        return error.lineno or 1
    except (ValueError, RecursionError, MemoryError):  # null bytes, absurd nesting
        return 1
    return None


def _is_program(code: str) -> bool:
    """True iff code parses and does something beyond bare expressions (a lone word of prose parses too)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(not isinstance(statement, ast.Expr) for statement in tree.body)


def _clean(code: str) -> str:
    """Drop leading blank lines and trailing whitespace; keep everything else verbatim."""
    return re.sub(r"\A(?:[ \t]*\n)+", "", code).rstrip()
