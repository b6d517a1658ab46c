"""corosync.conf parse/render: byte-exact round trip on the corpus, the grammar's errors, edits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.corosync import diff_corosync, load_corosync, parse_corosync
from controller.errors import InputError
from tests.conftest import CORPUS

CORPUS = CORPUS / "corosync"
REPO = Path(__file__).resolve().parents[2]
FULL_CONFIGS = sorted(p for p in CORPUS.iterdir() if p.name != "SOURCES.txt" and not p.name.endswith(".txt"))
SNIPPET_FILES = sorted(CORPUS.glob("*.snippets.txt"))


def test_corpus_is_there() -> None:
    assert len(FULL_CONFIGS) >= 15
    assert len(SNIPPET_FILES) == 2


@pytest.mark.parametrize("path", FULL_CONFIGS, ids=lambda p: p.name)
def test_corpus_config_round_trips_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    doc = parse_corosync(data, source=str(path))
    assert doc.render().encode("utf-8", "surrogateescape") == data


def _snippets(path: Path) -> list[tuple[str, int, str]]:
    """(name, first line in the file, text) of each '### snippet' block of a man-page fragment file."""
    text = path.read_text()
    out = []
    marks = list(re.finditer(r"^### snippet (\d+)[^\n]*\n", text, flags=re.M))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        out.append((f"{path.name}#{m.group(1)}", text.count("\n", 0, m.end()) + 1, text[m.end():end]))
    return out


SNIPPETS = [s for p in SNIPPET_FILES for s in _snippets(p)]


@pytest.mark.parametrize("name,first_line,text", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_man_page_snippets(name: str, first_line: int, text: str) -> None:
    """Man-page fragments: config-shaped ones round-trip; the one with prose ('....' and '1) ...')
    is not corosync syntax and must fail on the '....' line, as corosync itself would."""
    stripped_lines = [line.strip() for line in text.split("\n")]
    if "...." in stripped_lines:
        with pytest.raises(InputError) as exc:
            parse_corosync(text, source=name)
        bad = stripped_lines.index("....") + 1
        assert exc.value.line == bad
        assert exc.value.file == name
        return
    doc = parse_corosync(text, source=name)
    assert doc.render() == text
    assert doc.root.sections(), "a config snippet holds at least one section"


def test_whole_snippet_file_with_prose_fails_with_its_line() -> None:
    path = CORPUS / "corosync-man__votequorum.5.snippets.txt"
    lines = path.read_text().split("\n")
    with pytest.raises(InputError) as exc:
        parse_corosync(path.read_bytes(), source=str(path))
    assert exc.value.file == str(path)
    assert lines[exc.value.line - 1].strip() == "...."


def test_values_keep_colons_hashes_and_trailing_blanks_are_dropped() -> None:
    text = ("totem {\n\tname: a:b:c  \n\tx: v # not a comment\n}\n"
            "nodelist {\n node {\n  ring0_addr: fe80::1\n }\n}\n")
    doc, model = load_corosync(text)
    assert doc.get("totem.name") == "a:b:c"
    assert doc.get("totem.x") == "v # not a comment"
    assert model.nodes[0].ring0_addr == "fe80::1"
    assert doc.render() == text


def test_crlf_and_missing_final_newline_round_trip() -> None:
    text = "# c\r\ntotem {\r\n  token: 3000\r\n}\r\nlogging {\r\n  debug: off\r\n}"
    doc = parse_corosync(text)
    assert doc.get("totem.token") == "3000"
    assert doc.render() == text


@pytest.mark.parametrize("text,line,words", [
    ("totem {\n  token: 1\n", 1, "never closed"),
    ("totem {\n  interface {\n    linknumber: 0\n}\n", 1, "never closed"),
    ("totem {\n}\n}\n", 3, "unexpected closing brace"),
    ("totem {\n  token 3000\n}\n", 2, "not opening or closing"),
    ("totem {\n  : 3000\n}\n", 2, "key name can't be empty"),
    ("{\n}\n", 1, "missing section name"),
    ("totem { token: 1\n}\n", 1, "extra characters after"),
    ("totem {\n  } x\n}\n", 2, "extra characters before or after"),
])
def test_syntax_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_corosync(text, source="x/corosync.conf")
    assert exc.value.file == "x/corosync.conf"
    assert exc.value.line == line
    assert words in str(exc.value)


def test_set_existing_key_keeps_formatting_elsewhere() -> None:
    path = REPO / "desired" / "kamailio" / "corosync.conf"
    original = path.read_text()
    doc = parse_corosync(original)
    doc.set("totem.token", "5000")
    rendered = doc.render()
    assert rendered == original.replace("token: 3000", "token: 5000")
    changes = diff_corosync(parse_corosync(original), parse_corosync(rendered))
    assert [(c.path, c.old, c.new, c.change_class) for c in changes] == [
        ("totem.token", "3000", "5000", "reload")]


def test_set_new_key_follows_sibling_indentation_and_separator() -> None:
    text = "totem {\n    version: 2\n    token:\t1000\n\n    interface {\n        linknumber: 0\n    }\n}\n"
    doc = parse_corosync(text)
    doc.set("totem.consensus", "1200")
    doc.set("totem.interface[linknumber=0].knet_link_priority", "5")
    assert doc.render() == ("totem {\n    version: 2\n    token:\t1000\n    consensus: 1200\n\n"
                            "    interface {\n        linknumber: 0\n"
                            "        knet_link_priority: 5\n    }\n}\n")
    assert parse_corosync(doc.render()).get("totem.consensus") == "1200"


def test_add_node_and_delete_key_and_section() -> None:
    text = ("nodelist {\n\tnode {\n\t\tnodeid: 1\n\t\tring0_addr: 10.0.0.1\n\t}\n}\n"
            "quorum {\n\tprovider: corosync_votequorum\n\ttwo_node: 1\n}\n")
    doc = parse_corosync(text)
    doc.set("nodelist.node[nodeid=2].ring0_addr", "10.0.0.2")
    assert doc.delete("quorum.two_node")
    assert not doc.delete("quorum.two_node")
    out = doc.render()
    assert "\t\tnodeid: 2\n\t\tring0_addr: 10.0.0.2\n" in out
    assert "two_node" not in out
    _, model = load_corosync(out)
    assert [n.nodeid for n in model.nodes] == [1, 2]
    assert doc.delete("nodelist.node[nodeid=1]")
    assert [n.nodeid for n in load_corosync(doc.render())[1].nodes] == [2]


def test_set_on_file_without_final_newline_starts_a_new_line() -> None:
    doc = parse_corosync("totem {\n  token: 1\n}")
    doc.set("quorum.provider", "corosync_votequorum")
    assert parse_corosync(doc.render()).get("quorum.provider") == "corosync_votequorum"
    assert parse_corosync(doc.render()).get("totem.token") == "1"
