"""The most the fund pays for one unit of a drug (Decree 188/2025 art. 60, formerly Circular
22/2024 art. 4): the price the prescribing facility last paid under its winning bid; where it
has none, the national central-purchasing or negotiated price; then the provincial one; then
the lowest bid of a public facility of the same level in the same province. Every step is a
dated table judged on the day of the sale. Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from services.kernel.drugs import Drug

FACILITY_BID, NATIONAL, PROVINCIAL, PROVINCE_LOWEST_BID = ("facility_bid", "national", "provincial",
                                                           "province_lowest_bid")
BASES = (FACILITY_BID, NATIONAL, PROVINCIAL)

Dated = tuple[tuple[date, int], ...]


@dataclass(frozen=True)
class Facility:
    code: str
    province: str
    level: str             # primary | basic | specialised
    public: bool


@dataclass(frozen=True)
class ReferencePrice:
    unit_price_vnd: int
    basis: str             # which step of the chain gave it
    scope: str             # the facility, "VN", or the province


def _latest(table: Dated, day: date) -> int | None:
    """The price of the latest row in force on `day`: rows are sorted by date."""
    found = None
    for effective_from, price in table:
        if effective_from > day:
            break
        found = price
    return found


@dataclass(frozen=True)
class PriceList:
    facilities: dict[str, Facility] = field(default_factory=dict)
    bids: dict[tuple[str, str], Dated] = field(default_factory=dict)        # (facility, drug)
    national: dict[str, Dated] = field(default_factory=dict)                # drug
    provincial: dict[tuple[str, str], Dated] = field(default_factory=dict)  # (province, drug)

    def reference(self, drug: Drug, facility_code: str, day: date) -> ReferencePrice | None:
        """The cap on `day` for a prescription of `facility_code`; None when no step of the
        chain has a price (the drug is then not paid by the fund)."""
        facility_code = facility_code.lower()
        bid = _latest(self.bids.get((facility_code, drug.code), ()), day)
        if bid is not None:
            return ReferencePrice(bid, FACILITY_BID, facility_code)
        national = _latest(self.national.get(drug.code, ()), day)
        if national is None and drug.unit_price_vnd > 0:
            national = drug.unit_price_vnd   # the formulary's national price stands in
        if national is not None:
            return ReferencePrice(national, NATIONAL, "VN")
        facility = self.facilities.get(facility_code)
        if facility is None:
            return None
        provincial = _latest(self.provincial.get((facility.province, drug.code), ()), day)
        if provincial is not None:
            return ReferencePrice(provincial, PROVINCIAL, facility.province)
        peers = [(price, other.code) for other in self.facilities.values()
                 if other.public and other.province == facility.province and other.level == facility.level
                 and (price := _latest(self.bids.get((other.code, drug.code), ()), day)) is not None]
        if peers:
            price, peer = min(peers)
            return ReferencePrice(price, PROVINCE_LOWEST_BID, peer)
        return None
