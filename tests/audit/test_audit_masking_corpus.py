"""Masking on real configurations written by others (../shared/corpus): secrets go, names and timings stay.

Every corosync.conf of the corpus is shown as is (token, crypto_cipher, crypto_hash, secauth are timings,
names and switches; the authkey is a file, never in corosync.conf), and of the 850-odd real CIBs only
parameters that are secrets by name are masked, every one of them.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from controller.audit.masking import MASK, is_secret_name, mask_text, mask_xml, masked_fields
from controller.audit.models import AuditEvent
from tests.conftest import CORPUS


def corosync_files() -> list[Path]:
    return sorted(p for p in (CORPUS / "corosync").iterdir() if p.name != "SOURCES.txt")


def test_no_corpus_corosync_conf_loses_a_value() -> None:
    files = corosync_files()
    assert len(files) >= 15
    shown_keys = set()
    for f in files:
        text = f.read_text(errors="replace")
        assert mask_text(text, corosync=True) == text, f.name
        shown_keys |= {line.split(":")[0].strip() for line in text.splitlines() if ":" in line}
    assert {"token", "crypto_cipher", "crypto_hash", "secauth"} <= shown_keys


def test_a_token_change_on_a_corpus_file_reads_in_clear() -> None:
    text = next(f for f in corosync_files() if "token:" in f.read_text()).read_text()
    new = text.replace("token:", "token: 3250 #", 1)
    event = AuditEvent(id=1, prev_hash="0" * 64, hash="1" * 64, node="n1", kind="apply", outcome="success",
                       corosync_before=text, corosync_after=new,
                       summary="totem.token: 3000 -> 3250, totem.crypto_cipher: aes256",
                       details={"corosync_changes": [{"path": "totem.token", "old": "3000", "new": "3250"},
                                                     {"path": "totem.crypto_hash", "old": "sha1",
                                                      "new": "sha256"}]})
    masked = event.masked()
    assert masked.corosync_before == text and masked.corosync_after == new
    assert masked.summary == event.summary and masked.details == event.details


def corpus_cibs() -> list[etree._Element]:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    out = []
    for f in sorted((CORPUS / "cib").rglob("*.xml")):
        try:
            out.append(etree.parse(str(f), parser).getroot())
        except etree.XMLSyntaxError:
            continue  # a few test inputs are broken on purpose
    return out


def test_the_corpus_cibs_mask_exactly_their_secret_parameters() -> None:
    cibs = corpus_cibs()
    assert len(cibs) > 800
    secret_names: set[str] = set()
    masked_count = 0
    for root in cibs:
        text = etree.tostring(root, encoding="unicode")
        masked = mask_xml(text)
        assert masked is not None
        after = etree.fromstring(masked.encode())
        for before_nv, after_nv in zip(root.iter("nvpair"), after.iter("nvpair"), strict=True):
            name, value = before_nv.get("name") or "", before_nv.get("value")
            if is_secret_name(name) and value is not None:
                secret_names.add(name)
                masked_count += 1
                assert after_nv.get("value") == MASK, name
            else:
                assert after_nv.get("value") == value, name
    # What the corpus holds that is a secret by name: real passwords and keys, nothing else.
    assert secret_names == {"passwd", "password", "incoming_password", "ovn_nb_db_privkey",
                            "ovn_sb_db_privkey", "key", "community"}, secret_names
    assert masked_count > 100


def test_a_corpus_password_is_gone_from_every_field() -> None:
    root = next(r for r in corpus_cibs() if any(nv.get("name") == "passwd" and len(nv.get("value") or "") >= 4
                                               for nv in r.iter("nvpair")))
    secret = next(nv.get("value") or "" for nv in root.iter("nvpair") if nv.get("name") == "passwd"
                  and len(nv.get("value") or "") >= 4)
    config = etree.tostring(root.find("configuration"), encoding="unicode")
    event = AuditEvent(id=1, prev_hash="0" * 64, hash="1" * 64, node="n1", kind="apply", outcome="success",
                       config_after=config, error=f"fence agent said: login failed for {secret}")
    fields = masked_fields(event)
    assert all(secret not in str(v) for v in fields.values())
