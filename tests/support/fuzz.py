"""Hypothesis strategies that build any request message from its descriptor: every field
present or not, extreme and malformed values of each kind, unicode and huge strings, counts
past their bounds, unknown enum numbers, and now and then a value a real client would send
(a known prescription code, drug, card), so that some requests get past validation."""
from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

INT32 = (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32)
INT64 = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64)
ODD_TEXT = ["", " ", "0", "1", "-1", "0.5", "2,5", "1E+99999", "1e-99999", "NaN", "Infinity", "-0", "9" * 40,
            "\x00", "'; DROP TABLE x;--", "🙂" * 8, "Nguyễn Văn An", "\u202e", "%s%n", "../../etc/passwd"]


@dataclass
class Seeds:
    """Values of the running system, drawn now and then so that requests reach deeper."""
    codes: list[str] = field(default_factory=lambda: ["01001abcdefg-c"])
    drugs: list[str] = field(default_factory=lambda: ["N02BE01-500T"])
    cards: list[str] = field(default_factory=lambda: ["DN4010123456789"])
    citizen_ids: list[str] = field(default_factory=lambda: ["001203004567"])
    dispense_ids: list[str] = field(default_factory=lambda: ["d-01001abcdefg-c-0123456789abcdef"])
    for_sale: str = ""          # a code the generators never draw: cancels cannot take it away


def texts(name: str, seeds: Seeds) -> st.SearchStrategy[str]:
    known = {"code": seeds.codes, "replaced_code": seeds.codes, "drug_code": seeds.drugs,
             "card_identifier": seeds.cards + seeds.citizen_ids, "bhyt_card": seeds.cards,
             "citizen_id": seeds.citizen_ids, "dispense_id": seeds.dispense_ids,
             "icd10": ["J02.9", "B20", "I10", "Z99.99"], "certificate_number": ["001234/HNO-CCHN"],
             "dose_per_administration": ["1", "0.5", "2"], "facility_code": ["01001", "79001"]}.get(name)
    choices = [st.text(max_size=30), st.sampled_from(ODD_TEXT), st.integers(0, 5000).map(lambda n: "x" * n)]
    if known:
        choices = [st.sampled_from(known)] * 2 + choices
    return st.one_of(*choices)


def integers(kind: int) -> st.SearchStrategy[int]:
    if kind in INT32:
        low, high = -2**31, 2**31 - 1
    elif kind in INT64:
        low, high = -2**63, 2**63 - 1
    elif kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        low, high = 0, 2**32 - 1
    else:
        low, high = 0, 2**64 - 1
    edges = [v for v in (0, 1, 2, 3, 14, 20, 30, -1, 2**31 - 1, 2**53, 2**62, high, low) if low <= v <= high]
    return st.one_of(st.integers(0, 40), st.sampled_from(edges), st.integers(low, high))


def scalar(fd: FieldDescriptor, seeds: Seeds) -> st.SearchStrategy:
    if fd.type == FieldDescriptor.TYPE_STRING:
        return texts(fd.name, seeds)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)   # numbers the enum has and numbers it does not
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if fd.type == FieldDescriptor.TYPE_FLOAT else 64)
    return integers(fd.type)


def messages(descriptor: Descriptor, seeds: Seeds, depth: int = 0) -> st.SearchStrategy:
    """Any message of this type: each field set or not, repeated fields from empty to past
    their bounds, nested messages a few levels deep."""
    cls = GetMessageClass(descriptor)

    @st.composite
    def build(draw):
        message = cls()
        for fd in descriptor.fields:
            if not draw(st.booleans()):
                continue
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                if depth >= 4 or fd.message_type.full_name.startswith("google.protobuf."):
                    continue
                inner = messages(fd.message_type, seeds, depth + 1)
                if fd.is_repeated:
                    count = draw(st.one_of(st.integers(0, 3), st.sampled_from([49, 50, 51, 120])))
                    item = draw(inner)
                    getattr(message, fd.name).extend([item] * count)  # one drawn item, many copies: cheap
                else:
                    getattr(message, fd.name).CopyFrom(draw(inner))
            elif fd.is_repeated:
                values = draw(st.lists(scalar(fd, seeds), max_size=4))
                if draw(st.integers(0, 9)) == 0:
                    values = values * 30
                getattr(message, fd.name).extend(values)
            else:
                setattr(message, fd.name, draw(scalar(fd, seeds)))
        return message

    return build()


def _paths(message, prefix=()) -> list[tuple]:
    """Every (path to a field) set in `message`, nested messages and repeated items included."""
    found = []
    for fd, value in message.ListFields():
        found.append(prefix + (fd.name,))
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            items = list(enumerate(value)) if fd.is_repeated else [(None, value)]
            for index, item in items:
                found += _paths(item, prefix + ((fd.name, index) if index is not None else fd.name,))
    return found


def mutations(template, seeds: Seeds) -> st.SearchStrategy:
    """A valid request with one field replaced by a generated value, or cleared: requests that
    get past most checks and probe the one that remains."""
    paths = _paths(template)

    @st.composite
    def build(draw):
        message = template.__class__()
        message.CopyFrom(template)
        path = draw(st.sampled_from(paths))
        holder = message
        for step in path[:-1]:
            holder = getattr(holder, step[0])[step[1]] if isinstance(step, tuple) else getattr(holder, step)
        name = path[-1][0] if isinstance(path[-1], tuple) else path[-1]
        fd = holder.DESCRIPTOR.fields_by_name[name]
        if draw(st.integers(0, 4)) == 0 or fd.type == FieldDescriptor.TYPE_MESSAGE and fd.is_repeated:
            holder.ClearField(name)
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(holder, name).CopyFrom(draw(messages(fd.message_type, seeds, depth=3)))
        elif fd.is_repeated:
            del getattr(holder, name)[:]
            getattr(holder, name).extend(draw(st.lists(scalar(fd, seeds), max_size=4)))
        else:
            setattr(holder, name, draw(scalar(fd, seeds)))
        return message

    return build()
