"""Parse what people and remote parties hand us (YAML, JSON, text) within limits.

A policy, a benchmark manifest, a model card's front matter, a ``config.json``, a report: each is
parsed here, so that a hostile or broken file is one :class:`DocumentError` saying what is wrong
with it (its caller names the file and the fix), never a hang, a traceback or all the memory.

What is refused, and why:

- text that is not UTF-8 (a UTF-8 byte-order mark is skipped; UTF-16 and UTF-32 are read when they
  start with their byte-order mark, as YAML and JSON allow);
- YAML that expands to more than :data:`MAX_VALUES` values through anchors and aliases (the
  "billion laughs" bomb is a few hundred bytes that expand to 10^9 strings), or that refers to itself;
- a mapping that gives the same key twice (YAML 1.2 requires unique keys and RFC 8259 asks for
  them; PyYAML and ``json`` would silently keep the last, so a policy with two ``max:`` would lose
  one, and two readers of one signed report could disagree on what it says);
- nesting deeper than :data:`MAX_DEPTH` levels (the parsers and the schema checks recurse);
- in reports, JSON's non-standard ``NaN`` and ``Infinity``, which no report we write contains.

Sizes are capped by the callers before parsing (:func:`read_capped`): PyYAML's safe loader is pure
Python (1 MB of YAML took 10 s on a busy 2-core development machine).
"""

from __future__ import annotations

import codecs
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

__all__ = ["DocumentError", "MAX_DEPTH", "MAX_VALUES", "YAML_MAX_BYTES", "decode_text", "document_errors",
           "parse_json", "parse_yaml", "read_capped"]

#: The most values (scalars, lists, mappings) a YAML document may expand to through its aliases.
MAX_VALUES = 200_000
#: The deepest nesting of lists and mappings accepted in a YAML or JSON document.
MAX_DEPTH = 64
#: The most bytes of YAML parsed from one file (a policy, a manifest, a card's front matter).
YAML_MAX_BYTES = 1024**2

# Byte-order marks, longest first (UTF-32-LE's starts with UTF-16-LE's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


class DocumentError(ValueError):
    """A document that cannot be used; the message reads after the file's name ("is not valid YAML ...").

    Attributes:
        line: 1-based line of the problem in the parsed text, when known.
        detail: the problem alone, without the line ("key 'max' appears more than once in one mapping").
        fix: what to do, when the problem says it whatever the document ("save it as UTF-8"); else None,
            and the caller, who knows what the document is for, says it.
    """

    def __init__(self, message: str, line: Optional[int] = None, detail: Optional[str] = None,
                 fix: Optional[str] = None):
        super().__init__(message)
        self.line = line
        self.detail = detail or message
        self.fix = fix

    def fix_or(self, default: str) -> str:
        """:attr:`fix`, else ``default`` (the caller's fix for this kind of document)."""
        return self.fix or default


def _size(n: int) -> str:
    return f"{n / 1024**2:g} MiB" if n >= 1024**2 else f"{n:,} bytes"


@contextmanager
def document_errors(error: type[Exception], where: str, fix: str, after: str = "",
                    document_fix: bool = True) -> Iterator[None]:
    """Turn a :class:`DocumentError` or an ``OSError`` raised inside into one ``error`` line about ``where``.

    Args:
        error: the :class:`~compliance.errors.ComplianceError` subclass to raise.
        where: names the file ("policy file policies/x.yaml").
        fix: what to do, unless the problem says it itself (:attr:`DocumentError.fix`).
        after: appended to every message (", then run this again").
        document_fix: False where the problem's own fix does not apply (a report is ours: one that is not
            UTF-8 was damaged, not saved wrongly).
    """
    try:
        yield
    except DocumentError as exc:
        raise error(f"{where} {exc}: {exc.fix_or(fix) if document_fix else fix}{after}") from None
    except OSError as exc:
        raise error(f"{where} cannot be read ({exc.strerror or exc}): check its permissions{after}") from None


def read_capped(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, refusing a file larger than ``max_bytes`` before reading it.

    Raises:
        DocumentError: the file is larger than ``max_bytes``.
        OSError: the file cannot be read (the caller names it).
    """
    with open(path, "rb") as f:
        too_large = os.fstat(f.fileno()).st_size > max_bytes
        data = b"" if too_large else f.read(max_bytes + 1)  # a file that grows still gives no more than the cap
    if too_large or len(data) > max_bytes:
        raise DocumentError(f"is larger than {_size(max_bytes)}, more than is read of such a file")
    return data


def decode_text(data: bytes, errors: str = "strict") -> str:
    """``data`` as text: UTF-8 (a byte-order mark is skipped), or UTF-16/UTF-32 that start with their mark.

    Args:
        data: the file's bytes.
        errors: ``strict`` refuses bytes that are not UTF-8; ``replace`` reads them as U+FFFD.

    Raises:
        DocumentError: not UTF-8 text (with ``errors="strict"``).
    """
    codec = next((c for bom, c in _BOMS if data.startswith(bom)), "utf-8")
    # NUL is valid UTF-8, but never in YAML, JSON or CSV text: UTF-16 without its mark looks like this.
    if errors == "strict" and codec.startswith("utf-8") and b"\x00" in data:
        raise DocumentError(f"is not UTF-8 text (a NUL byte at offset {data.index(0)}: binary, or UTF-16 without "
                            "its byte-order mark?)", fix="save it as UTF-8")
    try:
        return data.decode(codec, errors=errors)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"is not {codec.upper().replace('-SIG', '')} text (byte 0x{data[exc.start]:02x} at "
                            f"offset {exc.start})", fix="save it as UTF-8") from None


def _value_problem(exc: ValueError) -> str:
    words = " ".join(str(exc).split())
    if "integer string conversion" in words:  # Python's guard against quadratic int() of huge literals
        return "a number has thousands of digits"
    return words[:200]


# --- YAML ----------------------------------------------------------------------------------


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys, alias bombs, self-reference and deep nesting."""

    _depth = 0

    def compose_node(self, parent, index):
        # The composer recurses once per level: stop at the limit, long before Python's own.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"it nests deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_graph(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class names it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears more than once in one mapping", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_graph(root) -> None:
    """Refuse a node graph that expands past :data:`MAX_VALUES`, nests past :data:`MAX_DEPTH`, or loops.

    Aliases make the graph a DAG whose expansion can be exponential in its size, so the expanded
    count and height are computed once per node (iteratively: the graph may be deep).
    """
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, height)
    started: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = [sizes[id(c)] for c in _children(node)]
            count = 1 + sum(k[0] for k in kids)
            height = 1 + max((k[1] for k in kids), default=0)
            if count > MAX_VALUES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"its aliases expand to more than {MAX_VALUES:,} values (a YAML alias bomb?)",
                    node.start_mark)
            if height > MAX_DEPTH:
                raise yaml.constructor.ConstructorError(
                    None, None, f"it nests deeper than {MAX_DEPTH} levels", node.start_mark)
            sizes[key] = (count, height)
            continue
        if key in sizes:
            continue
        if key in started:
            raise yaml.constructor.ConstructorError(None, None, "an alias refers to a value that contains it",
                                                    node.start_mark)
        started.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node))


def _yaml_problem(exc: yaml.YAMLError) -> tuple[str, Optional[int]]:
    """One line for a PyYAML error: its problem and context, and the 1-based line of its mark."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        words = " ".join(str(w) for w in (exc.problem, exc.context) if w)
        words = words.replace("\n", " ")
        return words or type(exc).__name__, (mark.line + 1 if mark is not None else None)
    return " ".join(str(exc).split()) or type(exc).__name__, None


def parse_yaml(text: str | bytes) -> Any:
    """Parse one YAML document with :class:`_LimitedLoader` (safe tags only).

    Args:
        text: the document; bytes are decoded with :func:`decode_text`.

    Raises:
        DocumentError: not UTF-8, not valid YAML, a duplicate key, an alias bomb, or too deep.
    """
    if isinstance(text, bytes):
        text = decode_text(text)
    try:
        return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        problem, line = _yaml_problem(exc)
        raise DocumentError(f"is not valid YAML ({'line %d: ' % line if line else ''}{problem})", line,
                            problem) from None
    except RecursionError:
        raise DocumentError(f"is not valid YAML (it nests deeper than {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # an integer of more digits than Python converts, a bad date
        raise DocumentError(f"is not valid YAML ({_value_problem(exc)})") from None


# --- JSON ----------------------------------------------------------------------------------


def _unique_object(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears more than once in one object")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in item if isinstance(v, (list, dict)))
    return deepest


def parse_json(data: str | bytes, allow_nan: bool = True) -> Any:
    """Parse a JSON document: unique keys, at most :data:`MAX_DEPTH` levels deep.

    Args:
        data: the document; bytes are decoded with :func:`decode_text`.
        allow_nan: accept ``NaN``, ``Infinity`` and ``-Infinity`` (Python writes them; JSON has none).

    Raises:
        DocumentError: not UTF-8, not valid JSON, a duplicate key, a forbidden constant, or too deep.
    """
    if isinstance(data, bytes):
        data = decode_text(data)
    elif data.startswith("\ufeff"):
        data = data[1:]
    if not data.strip():
        raise DocumentError("is empty")
    hooks: dict[str, Any] = {"object_pairs_hook": _unique_object}
    if not allow_nan:
        hooks["parse_constant"] = _refuse_constant
    try:
        value = json.loads(data, **hooks)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}: " if "\n" in data.rstrip("\n") else ""
        problem, line = where + exc.msg, exc.lineno
    except RecursionError:
        problem, line = f"it nests deeper than {MAX_DEPTH} levels", None
    except ValueError as exc:  # a duplicate key, NaN, an integer of more digits than Python converts
        problem, line = _value_problem(exc), None
    else:
        if _depth(value) <= MAX_DEPTH:
            return value
        problem, line = f"it nests deeper than {MAX_DEPTH} levels", None
    raise DocumentError(f"is not valid JSON ({problem})", line, problem)
