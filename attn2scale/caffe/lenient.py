"""Find the fields of a protobuf text file that a schema does not know, and blank them out.

Other Caffe forks write fields that this schema lacks. :func:`unknown_fields` walks
the text token by token against a message descriptor, reading it the way protobuf's
text parser does, and returns each unknown field with its place: the path from the
root (field names, and the index of each repeated message), the line and column of
its name, and the span of text it takes (name, value and a trailing ``,``/``;``).
An unknown field's value is passed over as protobuf's ``allow_unknown_field`` skips
it (a scalar, a ``[list]`` or a nested message), checked as strictly.

:func:`blank` replaces such spans by spaces and keeps the newlines, so that the line
and column of any later parse error still point into the original file.

Known fields' values are only followed, not checked against their types: the
caller parses the blanked text with protobuf, which does that. Where the walk cannot
follow the text it raises :class:`UnreadableText`; the caller then leaves the
verdict to protobuf's error.

This module knows nothing of Caffe: which unknown fields may be dropped is the
reader's decision (:mod:`.reader`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

# Protobuf's text parser refuses deeper nesting by default; so does this walk.
MAX_DEPTH = 100

# Tokens as protobuf's text tokenizer cuts them: identifiers and numbers are words,
# any other character (outside strings and comments) is punctuation on its own.
_TOKEN = re.compile(r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[a-zA-Z_][0-9a-zA-Z_+-]*|(?:[0-9+-]|\.[0-9])[0-9a-zA-Z_.+-]*)
  | (?P<punct>\S)
""", re.VERBOSE)
_NAME = re.compile(r"\w")                   # a field name starts so (a number names an unknown field)
_IDENTIFIER = re.compile(r"[^\d\W]")       # an enum value and the like start so
_CLOSE = {"{": "}", "<": ">"}

PathItem = Union[str, int]


class UnreadableText(ValueError):
    """The text is malformed in a way the walk cannot follow (the parser will say how)."""


@dataclass(frozen=True)
class UnknownField:
    """A field the schema does not know: where it is and what text it takes."""

    path: Tuple[PathItem, ...]   # e.g. ("layer", 0, "image_data_param", "new_height")
    line: int                    # 1-based, of the field's name
    column: int                  # 1-based
    start: int                   # offsets into the text: [start, end) is name, value and separator
    end: int


def format_path(path: Sequence[PathItem]) -> str:
    """``("image_data_param", "shape", 1, "foo")`` -> ``"image_data_param.shape[1].foo"``."""
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


class _Token(NamedTuple):
    kind: str   # "string", "punct" or "word"
    text: str
    start: int
    end: int


def _tokens(text: str) -> List[_Token]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UnreadableText(f"cannot read the text at offset {pos}")
        if m.lastgroup != "skip":
            out.append(_Token(m.lastgroup, m.group(), m.start(), m.end()))
        pos = m.end()
    return out


def _is_repeated(fd) -> bool:
    flag = getattr(fd, "is_repeated", None)  # protobuf >= 5.x; older ones have only ``label``
    return bool(flag) if flag is not None else fd.label == fd.LABEL_REPEATED


class _Walk:
    """One pass over the tokens: known message fields are descended into, unknown ones skipped
    the way protobuf skips them (``allow_unknown_field``) and recorded."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.found: List[UnknownField] = []

    def peek(self) -> Optional[_Token]:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> _Token:
        tok = self.peek()
        if tok is None:
            raise UnreadableText("the text ends inside a message")
        self.i += 1
        return tok

    def looking_at(self, *punct: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "punct" and tok.text in punct

    def accept(self, *punct: str) -> bool:
        if self.looking_at(*punct):
            self.i += 1
            return True
        return False

    def message(self, desc, path: Tuple[PathItem, ...], close: Optional[str], depth: int) -> None:
        """The fields of a ``desc`` message (None: an unknown one, skipped) up to ``close`` (None: the end)."""
        if depth > MAX_DEPTH:
            raise UnreadableText("nested too deeply")
        counts: Dict[str, int] = {}
        while not (self.peek() is None if close is None else self.accept(close)):
            first = self.take()
            name = self.field_name(first, skipping=desc is None)
            fd = desc.fields_by_name.get(name) if desc is not None else None
            if fd is None:
                self.skip_contents(depth)
            else:
                self.known_value(fd, path, counts, depth)
            self.accept(",", ";")
            if fd is None and desc is not None:
                line = self.text.count("\n", 0, first.start) + 1
                column = first.start - self.text.rfind("\n", 0, first.start)
                end = self.toks[self.i - 1].end
                self.found.append(UnknownField(path + (name,), line, column, first.start, end))

    def known_value(self, fd, path, counts: Dict[str, int], depth: int) -> None:
        """The value of a field of the schema: messages are walked, scalars passed over."""
        if fd.message_type is not None:
            self.accept(":")
            read = functools.partial(self.sub_message, fd, path, counts, depth)
        elif self.accept(":"):
            read = self.scalar
        else:
            raise UnreadableText(f"no ':' after {fd.name}")
        if _is_repeated(fd):
            self.elements(read)
        else:
            read()

    def field_name(self, first: _Token, skipping: bool) -> str:
        if first.kind == "word" and _NAME.match(first.text):
            return first.text
        # An extension or Any: protobuf refuses one in a known message (Caffe's have no
        # extensions), skips one inside an unknown field.
        if first.kind == "punct" and first.text == "[" and skipping:
            parts = []
            while not self.accept("]"):
                tok = self.take()
                if tok.kind == "string" or tok.text in "[{}<>:,;":
                    raise UnreadableText(f"unexpected {tok.text!r} in a [name]")
                parts.append(tok.text)
            return "[" + "".join(parts) + "]"
        raise UnreadableText(f"expected a field name, got {first.text!r}")

    def elements(self, read_one) -> None:
        """One value, or a ``[a, b, ...]`` list of them."""
        if not self.accept("["):
            read_one()
            return
        if self.accept("]"):
            return
        read_one()
        while not self.accept("]"):
            if not self.accept(","):
                raise UnreadableText("expected ',' or ']' in a list")
            read_one()

    def sub_message(self, fd, path, counts: Dict[str, int], depth: int) -> None:
        opener = self.take()
        if opener.kind != "punct" or opener.text not in _CLOSE:
            raise UnreadableText(f"expected '{{' after {fd.name}")
        sub = path + (fd.name,)
        if _is_repeated(fd):
            sub += (counts.get(fd.name, 0),)
            counts[fd.name] = sub[-1] + 1
        self.message(fd.message_type, sub, _CLOSE[opener.text], depth + 1)

    def scalar(self) -> None:
        """A value as protobuf's skipper accepts it: strings, an identifier, or a number."""
        tok = self.take()
        if tok.kind == "string":
            while self.peek() is not None and self.peek().kind == "string":  # "a" "b" is one string
                self.i += 1
        elif tok.kind != "word" or not (_IDENTIFIER.match(tok.text) or _is_number(tok.text)):
            raise UnreadableText(f"invalid value {tok.text!r}")

    def skip_contents(self, depth: int) -> None:
        """An unknown field's value: ``: scalar``, ``: [list]``, or a message (``:`` optional)."""
        if self.accept(":") and not self.looking_at("{", "<"):
            self.elements(lambda: self.skip_message(depth) if self.looking_at("{", "<") else self.scalar())
        else:
            self.skip_message(depth)

    def skip_message(self, depth: int) -> None:
        opener = self.take()
        if opener.kind != "punct" or opener.text not in _CLOSE:
            raise UnreadableText(f"expected '{{', got {opener.text!r}")
        self.message(None, (), _CLOSE[opener.text], depth + 1)


def _is_number(word: str) -> bool:
    from google.protobuf import text_format

    for parse in (lambda w: text_format.ParseInteger(w, is_signed=True, is_long=True),
                  lambda w: text_format.ParseInteger(w, is_signed=False, is_long=True), text_format.ParseFloat):
        try:
            parse(word)
            return True
        except ValueError:
            pass
    return False


def unknown_fields(text: str, descriptor) -> List[UnknownField]:
    """The fields of ``text`` (a text-format ``descriptor`` message) that the schema lacks, in order.

    Raises :class:`UnreadableText` where the text is malformed.
    """
    walk = _Walk(text)
    walk.message(descriptor, (), None, 0)
    return walk.found


def offset(text: str, line: Optional[int], column: Optional[int]) -> int:
    """The offset in ``text`` of a 1-based line and column (a parse error's place); -1 when there is none."""
    if line is None or column is None or line < 1 or column < 1:
        return -1
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return -1
    return start + column - 1


def blank(text: str, fields: Sequence[UnknownField]) -> str:
    """``text`` with the spans of ``fields`` replaced by spaces (newlines kept: lines stay where they were)."""
    chars = list(text)
    for f in fields:
        for k in range(f.start, f.end):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)
