"""The agency's claims as Decision 130/QD-BYT XML tables (as amended by Decision 4750/QD-BYT):
per visit (`MA_LK`), XML1 (the visit's summary, table 1) and XML2 (its drugs, table 2), each
base64 inside the GIAMDINHHS envelope. Times are Vietnam local `yyyyMMddHHmm`, money whole dong,
sex by the claims XML's code list (1 male, 2 female, 3 unknown). Fields we could not confirm
are marked (uncertain) in reference/v1/manifest.json."""
from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections import OrderedDict
from datetime import date, datetime, timezone

from eprescription.common.v1 import common_pb2
from eprescription.events.v1 import events_pb2

from services.common import dates
from services.common.national_codes import date_to_claims_xml, sex_to_claims_xml, time_to_claims_xml
from services.insurance.domain.model import Member

SEX = {"male": common_pb2.SEX_MALE, "female": common_pb2.SEX_FEMALE}
REVERSED = events_pb2.CLAIM_OUTCOME_REVERSED
MA_LOAI_KCB_OUTPATIENT = "1"    # (uncertain) outpatient examination, Decision 4750 code list


def visit_of(claim: events_pb2.ClaimAdjudicated) -> tuple[str, str]:
    """(facility code, MA_LK): the encounter the hospital stated, else the prescription."""
    key = claim.visit_key or f"rx:{claim.prescription_code}"
    facility, _, encounter = key.partition(":")
    if facility == "rx":
        return claim.prescription_code[:5], encounter
    return facility, encounter


def _text(parent: ET.Element, tag: str, value) -> None:
    ET.SubElement(parent, tag).text = "" if value is None else str(value)


def _xml(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="utf-8")


def _birth(member: Member | None) -> str:
    return date_to_claims_xml(member.date_of_birth) + "0000" if member else ""


def table1(ma_lk: str, facility: str, claims: list, member: Member | None) -> bytes:
    first = claims[0]
    day = dates.from_proto(first.dispensed_on) or date.today()
    lines = [line for claim in claims for line in claim.lines]
    card = member.card_on(day) if member else None
    root = ET.Element("TONG_HOP")
    for tag, value in (
            ("MA_LK", ma_lk), ("STT", 1), ("MA_BN", first.member_id), ("HO_TEN", member.full_name if member else ""),
            ("SO_CCCD", member.citizen_id if member else ""), ("NGAY_SINH", _birth(member)),
            ("GIOI_TINH", sex_to_claims_xml(SEX.get(member.sex, common_pb2.SEX_UNKNOWN)) if member else 3),
            ("MA_THE_BHYT", first.card_code), ("MA_DKBD", card.registered_facility if card else ""),
            ("GT_THE_TU", date_to_claims_xml(card.valid_from) if card else ""),
            ("GT_THE_DEN", date_to_claims_xml(card.valid_to) if card else ""),
            ("MA_LOAI_KCB", MA_LOAI_KCB_OUTPATIENT), ("MA_CSKCB", facility),
            ("NGAY_VAO", date_to_claims_xml(day) + "0000"), ("NGAY_RA", date_to_claims_xml(day) + "2359"),
            ("T_THUOC", sum(line.quantity * line.unit_price_vnd for line in lines)),
            ("T_TONGCHI_BV", sum(line.quantity * line.unit_price_vnd for line in lines)),
            ("T_TONGCHI_BH", sum(line.insured_vnd for line in lines)),
            ("T_BNTT", sum(line.patient_vnd - line.copay_vnd for line in lines)),
            ("T_BNCCT", sum(line.copay_vnd for line in lines)),
            ("T_BHTT", sum(line.fund_vnd for line in lines)),
            ("MUC_HUONG", max(c.benefit_percent for c in claims)),
            ("NAM_QT", day.year), ("THANG_QT", day.month)):
        _text(root, tag, value)
    return _xml(root)


def table2(ma_lk: str, claims: list) -> bytes:
    root = ET.Element("CHITIEU_CHITIET_THUOC")
    listing = ET.SubElement(root, "DSACH_CHI_TIET_THUOC")
    n = 0
    for claim in claims:
        when = time_to_claims_xml(claim.adjudicated_at.ToDatetime(tzinfo=timezone.utc))
        for line in claim.lines:
            n += 1
            row = ET.SubElement(listing, "CHI_TIET_THUOC")
            for tag, value in (
                    ("MA_LK", ma_lk), ("STT", n), ("MA_THUOC", line.drug_code), ("SO_LUONG", line.quantity),
                    ("DON_GIA", line.unit_price_vnd), ("TYLE_TT_BH", line.payment_ratio),
                    ("THANH_TIEN_BV", line.quantity * line.unit_price_vnd), ("THANH_TIEN_BH", line.insured_vnd),
                    ("T_BHTT", line.fund_vnd), ("T_BNCCT", line.copay_vnd),
                    ("T_BNTT", line.patient_vnd - line.copay_vnd), ("MUC_HUONG", claim.benefit_percent),
                    ("NGAY_YL", when), ("MA_CHUNG_TU", claim.claim_id)):
                _text(row, tag, value)
    return _xml(root)


def envelope(claims: list[events_pb2.ClaimAdjudicated], members: dict[str, Member], made: datetime) -> bytes:
    """GIAMDINHHS with one HOSO per visit of the facilities' claims (reversed ones left out)."""
    visits: OrderedDict = OrderedDict()
    for claim in claims:
        if claim.outcome == REVERSED or claim.payee == events_pb2.PAYEE_PATIENT:
            continue
        facility, ma_lk = visit_of(claim)
        visits.setdefault((claim.member_id, facility, ma_lk), []).append(claim)
    root = ET.Element("GIAMDINHHS")
    unit = ET.SubElement(root, "THONGTINDONVI")
    facilities = sorted({facility for _, facility, _ in visits})
    _text(unit, "MACSKCB", facilities[0] if len(facilities) == 1 else ",".join(facilities))
    info = ET.SubElement(root, "THONGTINHOSO")
    _text(info, "NGAYLAP", time_to_claims_xml(made)[:8])
    _text(info, "SOLUONGHOSO", len(visits))
    listing = ET.SubElement(info, "DANHSACHHOSO")
    for (member_id, facility, ma_lk), group in visits.items():
        record = ET.SubElement(listing, "HOSO")
        for kind, content in (("XML1", table1(ma_lk, facility, group, members.get(member_id))),
                              ("XML2", table2(ma_lk, group))):
            file = ET.SubElement(record, "FILEHOSO")
            _text(file, "LOAIHOSO", kind)
            _text(file, "NOIDUNGFILE", base64.b64encode(content).decode())
    ET.SubElement(root, "CHUKYDONVI")   # the facility's XML signature, added by its own signing tool
    return _xml(root)


def read(document: bytes) -> list[dict]:
    """The envelope parsed back: per HOSO, XML1's fields and XML2's rows (for checks and tests)."""
    out = []
    for record in ET.fromstring(document).iter("HOSO"):
        files = {f.findtext("LOAIHOSO"): ET.fromstring(base64.b64decode(f.findtext("NOIDUNGFILE")))
                 for f in record.iter("FILEHOSO")}
        summary = {child.tag: child.text or "" for child in files["XML1"]}
        rows = [{child.tag: child.text or "" for child in row} for row in files["XML2"].iter("CHI_TIET_THUOC")]
        out.append({"XML1": summary, "XML2": rows})
    return out
