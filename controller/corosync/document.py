"""corosync.conf as a lossless document: parse, render byte for byte, edit keeping the formatting.

The grammar follows corosync 3's exec/coroparse.c, one line at a time:
- trailing blanks (space, tab, NBSP) and the line end are ignored;
- a line whose first non-blank character is ``#`` is a comment, an empty line is ignored
  (an inline ``#`` after a value is *not* a comment: it is part of the value);
- a line containing ``{`` opens a section: the name is the text before the first ``{`` with
  surrounding blanks and trailing ``:``/``{`` removed; the name must not be empty and nothing may
  follow the brace;
- otherwise a line containing ``:`` is ``key: value``: the key is the text before the first colon,
  the value everything after it (so values may contain colons, e.g. IPv6 addresses);
- otherwise the line must be exactly ``}`` and close the current section;
- anything else is an error, as is a section left open at the end of the file.

The tree keeps every line's original text; rendering concatenates them, so an unchanged document
renders to the exact input. Edits rewrite only the lines they touch.

Paths name keys and sections with dots; a repeated section is picked with a selector:
``nodelist.node[nodeid=2].ring0_addr``, ``logging.logger_subsys[subsys=QUORUM].debug`` or by
position ``nodelist.node[0].name`` (0-based among siblings of that name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from controller.errors import InputError

_BLANKS = " \t\u00a0"
_SEGMENT = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<sel>[^\]]*)\])?$")


@dataclass
class Trivia:
    """A blank or comment line, kept verbatim."""

    raw: str
    line: int


@dataclass
class Key:
    """``key: value``; raw is split so the value can be replaced without touching the rest."""

    key: str
    value: str
    prefix: str  # indent, key, colon and the blanks after it
    suffix: str  # trailing blanks and the line end
    line: int

    @property
    def raw(self) -> str:
        return f"{self.prefix}{self.value}{self.suffix}"


@dataclass
class Section:
    name: str
    open_raw: str = ""
    close_raw: str = ""
    line: int = 0
    close_line: int = 0
    children: list[Trivia | Key | Section] = field(default_factory=list)

    # ---- reading

    def key_items(self) -> list[Key]:
        return [c for c in self.children if isinstance(c, Key)]

    def sections(self, name: str | None = None) -> list[Section]:
        return [c for c in self.children if isinstance(c, Section) and (name is None or c.name == name)]

    def get(self, key: str) -> str | None:
        """Value of key in this section; the last occurrence wins, as in corosync."""
        found = None
        for c in self.children:
            if isinstance(c, Key) and c.key == key:
                found = c.value
        return found

    def get_key(self, key: str) -> Key | None:
        found = None
        for c in self.children:
            if isinstance(c, Key) and c.key == key:
                found = c
        return found

    def items(self) -> dict[str, str]:
        """Keys of this section (last occurrence wins), in first-appearance order."""
        out: dict[str, str] = {}
        for c in self.children:
            if isinstance(c, Key):
                out[c.key] = c.value
        return out

    def render(self) -> str:
        parts = [self.open_raw]
        for c in self.children:
            parts.append(c.render() if isinstance(c, Section) else c.raw)
        parts.append(self.close_raw)
        return "".join(parts)


@dataclass
class CorosyncDocument:
    """A parsed corosync.conf. ``root`` is a nameless section holding the top-level items."""

    root: Section
    source: str = "corosync.conf"
    newline: str = "\n"
    indent_unit: str = "\t"  # detected from the first indented line; "" if none is indented

    def render(self) -> str:
        return "".join(c.render() if isinstance(c, Section) else c.raw for c in self.root.children)

    # ---- paths

    def find(self, path: str) -> Key | Section | None:
        """The key or section at path, or None."""
        *parents, last = _split_path(path)
        section: Section | None = self.root
        for name, sel in parents:
            section = _select(section, name, sel) if section else None
        if section is None:
            return None
        name, sel = last
        if sel is None:
            key = section.get_key(name)
            if key is not None:
                return key
        return _select(section, name, sel)

    def get(self, path: str) -> str | None:
        found = self.find(path)
        return found.value if isinstance(found, Key) else None

    def set(self, path: str, value: str) -> None:
        """Set key at path. An existing key keeps its indentation and spacing (the last occurrence
        is changed, the one corosync uses); a new key goes after the section's last item, indented
        like its siblings. Missing sections on the way are created (a ``[k=v]`` selector creates a
        section starting with ``k: v``)."""
        if "\n" in value or "\r" in value:
            raise InputError(f"value for {path} must be a single line", file=self.source)
        *parents, (name, sel) = _split_path(path)
        if sel is not None:
            raise InputError(f"{path}: a key path cannot end with a selector", file=self.source)
        section = self.root
        for pname, psel in parents:
            child = _select(section, pname, psel)
            if child is None:
                child = self._create_section(section, pname, psel)
            section = child
        key = section.get_key(name)
        if key is not None:
            key.value = value
            return
        self._insert(section, self._new_key(section, name, value))

    def delete(self, path: str) -> bool:
        """Remove the key (every occurrence) or the whole section at path. True if removed."""
        *parents, (name, sel) = _split_path(path)
        section: Section | None = self.root
        for pname, psel in parents:
            section = _select(section, pname, psel) if section else None
        if section is None:
            return False
        if sel is None:
            before = len(section.children)
            section.children = [c for c in section.children if not (isinstance(c, Key) and c.key == name)]
            if len(section.children) != before:
                return True
        target = _select(section, name, sel)
        if target is None:
            return False
        section.children = [c for c in section.children if c is not target]
        return True

    def add_section(self, path: str) -> Section:
        """Append a new (empty) section at path, e.g. ``nodelist.node``; parents are created."""
        *parents, (name, sel) = _split_path(path)
        section = self.root
        for pname, psel in parents:
            child = _select(section, pname, psel)
            if child is None:
                child = self._create_section(section, pname, psel)
            section = child
        return self._create_section(section, name, sel)

    # ---- helpers for edits

    def _depth_of(self, target: Section) -> int:
        def walk(sec: Section, depth: int) -> int | None:
            if sec is target:
                return depth
            for child in sec.sections():
                found = walk(child, depth + 1)
                if found is not None:
                    return found
            return None

        return walk(self.root, 0) or 0

    def _indent_for(self, section: Section) -> str:
        for c in section.children:
            if isinstance(c, Key | Section):
                raw = c.prefix if isinstance(c, Key) else c.open_raw
                return raw[: len(raw) - len(raw.lstrip(_BLANKS))]
        return self.indent_unit * self._depth_of(section)

    def _new_key(self, section: Section, name: str, value: str) -> Key:
        indent = self._indent_for(section)
        sep = " "
        for c in section.key_items():  # copy the spacing after the colon from a sibling
            sep = c.prefix[c.prefix.index(":") + 1:] if c.prefix.rstrip(_BLANKS).endswith(":") else " "
            break
        return Key(name, value, f"{indent}{name}:{sep}", self.newline, 0)

    def _insert(self, section: Section, item: Key | Section) -> None:
        # keys go after the last key (before subsections), sections after the last item; trailing
        # blank lines and comments stay where they are
        last_key = last_item = first_section = None
        for i, c in enumerate(section.children):
            if isinstance(c, Key):
                last_key = i
            if isinstance(c, Section) and first_section is None:
                first_section = i
            if not isinstance(c, Trivia):
                last_item = i
        if isinstance(item, Key) and last_key is not None:
            pos = last_key + 1
        elif isinstance(item, Key) and first_section is not None:
            pos = first_section
        elif last_item is not None:
            pos = last_item + 1
        else:
            pos = len(section.children)
        self._ensure_newline_before(section, pos)
        section.children.insert(pos, item)

    def _ensure_newline_before(self, section: Section, pos: int) -> None:
        # a file whose last line lacks a newline would glue the new line onto it
        if section is not self.root or pos != len(section.children) or not section.children:
            return
        last = section.children[-1]
        if isinstance(last, Section):
            if not last.close_raw.endswith("\n"):
                last.close_raw += self.newline
        elif isinstance(last, Key):
            if not last.suffix.endswith("\n"):
                last.suffix += self.newline
        elif not last.raw.endswith("\n"):
            last.raw += self.newline

    def _create_section(self, parent: Section, name: str, sel: str | None) -> Section:
        indent = self._indent_for(parent)
        new = Section(name, open_raw=f"{indent}{name} {{{self.newline}",
                      close_raw=f"{indent}}}{self.newline}")
        self._insert(parent, new)
        if sel and "=" in sel:
            k, v = sel.split("=", 1)
            new.children.append(Key(k, v, f"{indent}{self.indent_unit}{k}: ", self.newline, 0))
        return new


def _split_path(path: str) -> list[tuple[str, str | None]]:
    parts: list[tuple[str, str | None]] = []
    # dots inside a selector value (addresses) must not split the path
    for seg in re.findall(r"[^.\[]+(?:\[[^\]]*\])?", path):
        m = _SEGMENT.match(seg)
        if not m:
            raise InputError(f"bad corosync path segment {seg!r} in {path!r}")
        parts.append((m.group("name"), m.group("sel")))
    if not parts:
        raise InputError(f"empty corosync path {path!r}")
    return parts


def _select(section: Section, name: str, sel: str | None) -> Section | None:
    candidates = section.sections(name)
    if sel is None:
        return candidates[0] if candidates else None
    if sel.isdigit():
        i = int(sel)
        return candidates[i] if i < len(candidates) else None
    if "=" in sel:
        k, v = sel.split("=", 1)
        for c in candidates:
            if c.get(k) == v:
                return c
        return None
    raise InputError(f"bad selector [{sel}] for section {name}")


def _content(raw: str) -> str:
    """What corosync looks at: line end and trailing blanks removed."""
    text = raw
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text.rstrip(_BLANKS)


def _raw_lines(text: str) -> Iterator[str]:
    # split on \n only (corosync uses fgets); keep the line ends for the exact rendering
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end + 1]
        start = end + 1


def parse_corosync(text: str | bytes, source: str = "corosync.conf") -> CorosyncDocument:
    """Parse corosync.conf text. Raises InputError naming source and line on a syntax error."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="surrogateescape")
    root = Section("")
    stack: list[Section] = [root]
    newline = "\r\n" if "\r\n" in text else "\n"
    indent_unit = ""
    for lineno, raw in enumerate(_raw_lines(text), start=1):
        content = _content(raw)
        stripped = content.lstrip(_BLANKS)
        current = stack[-1]
        if not stripped or stripped.startswith("#"):
            current.children.append(Trivia(raw, lineno))
            continue
        if not indent_unit and content != stripped:
            lead = content[: len(content) - len(stripped)]
            indent_unit = "\t" if lead.startswith("\t") else lead
        if "{" in content:
            before, after = content.split("{", 1)
            name = before.strip(_BLANKS).rstrip(_BLANKS + ":{").strip(_BLANKS)
            if not name:
                raise InputError("missing section name before opening bracket '{'", file=source, line=lineno)
            if after.strip(_BLANKS):
                raise InputError(f"extra characters after opening bracket '{{' of section {name!r}",
                                 file=source, line=lineno)
            section = Section(name, open_raw=raw, line=lineno)
            current.children.append(section)
            stack.append(section)
            continue
        if ":" in content:
            before, after = content.split(":", 1)
            key = before.strip(_BLANKS).rstrip(_BLANKS + ":{").strip(_BLANKS)
            if not key:
                raise InputError("key name can't be empty", file=source, line=lineno)
            value = after.lstrip(_BLANKS)
            cut = len(content)  # where the trailing blanks and the line end start
            prefix = raw[: cut - len(value)]
            current.children.append(Key(key, value, prefix, raw[cut:], lineno))
            continue
        if "}" in content:
            if stripped != "}":
                raise InputError("extra characters before or after closing bracket '}'", file=source,
                                 line=lineno)
            if len(stack) == 1:
                raise InputError("unexpected closing brace '}' (no section is open)", file=source,
                                 line=lineno)
            current.close_raw = raw
            current.close_line = lineno
            stack.pop()
            continue
        raise InputError(f"line is not opening or closing a section or 'key: value': {stripped!r}",
                         file=source, line=lineno)
    if len(stack) > 1:
        unclosed = stack[-1]
        path = ".".join(s.name for s in stack[1:])
        raise InputError(f"section {path!r} opened here is never closed (missing '}}')", file=source,
                         line=unclosed.line)
    # a file written without indentation gets new lines without indentation too
    return CorosyncDocument(root, source=source, newline=newline, indent_unit=indent_unit)


def render_corosync(doc: CorosyncDocument) -> str:
    return doc.render()
