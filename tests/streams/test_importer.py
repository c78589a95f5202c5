"""CSV import: column and vocabulary mapping, timestamp detection, rejections by reason."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from support import shared_data_dir

from streams import importer
from streams.events import derive_event_id
from streams.importer import (
    ImportSpec,
    ImportSpecError,
    ImportStats,
    detect_ts_unit,
    import_csv,
    import_text,
    parse_mapping,
)

RETAILROCKET = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221999827,111016,addtocart,248676,
1433223236124,111016,transaction,248676,11117
"""

RETAILROCKET_SPEC = ImportSpec(
    columns=parse_mapping("ts=timestamp,user_id=visitorid,item_id=itemid,type=event"),
    types=parse_mapping("view=view,addtocart=cart,transaction=purchase"),
)

TAOBAO = """user,item,category,behavior,ts
1,2268318,2520377,pv,1511544070
1,2333346,2520771,fav,1511561733
100,2268318,2520377,cart,1511587000
100,2268318,2520377,buy,1511590000
100,5002615,2520377,share,1511590001
"""

TAOBAO_SPEC = ImportSpec(
    columns=parse_mapping("ts=ts,user_id=user,item_id=item,type=behavior,category=category"),
    types=parse_mapping("pv=view,fav=favorite,cart=cart,buy=purchase"),
)


def test_retailrocket_layout_in_milliseconds_with_the_extra_column_ignored():
    stats = ImportStats()
    events = import_text(RETAILROCKET, RETAILROCKET_SPEC, stats=stats)
    assert [(e["user_id"], e["item_id"], e["type"]) for e in events] == [
        ("257597", "355908", "view"),
        ("992329", "248676", "view"),
        ("111016", "248676", "cart"),
        ("111016", "248676", "purchase"),
    ]
    assert [e["ts"] for e in events] == [
        1433221332.117,
        1433224214.164,
        1433221999.827,
        1433223236.124,
    ]
    assert stats.ts_unit == "ms"
    assert (stats.rows, stats.accepted, sum(stats.rejected.values())) == (4, 4, 0)
    assert all(set(e) == {"user_id", "item_id", "type", "ts", "event_id"} for e in events)


def test_event_ids_are_derived_deterministically_when_the_log_has_none():
    first = import_text(RETAILROCKET, RETAILROCKET_SPEC)
    second = import_text(RETAILROCKET, RETAILROCKET_SPEC)
    assert [e["event_id"] for e in first] == [e["event_id"] for e in second]
    e = first[0]
    assert e["event_id"] == derive_event_id(e["user_id"], e["item_id"], e["type"], e["ts"], "")
    assert len({e["event_id"] for e in first}) == 4


def test_taobao_layout_in_seconds_with_category_and_an_unknown_behaviour():
    stats = ImportStats()
    events = import_text(TAOBAO, TAOBAO_SPEC, stats=stats)
    assert [e["type"] for e in events] == ["view", "favorite", "cart", "purchase"]
    assert events[0]["ts"] == 1511544070.0
    assert events[0]["item"] == {"category": "2520377"}
    assert stats.ts_unit == "s"
    assert stats.rows == 5 and stats.accepted == 4
    assert stats.rejected == {"behavior: unknown value": 1}
    assert stats.first_line["behavior: unknown value"] == 6


def test_headerless_file_with_fieldnames():
    body = TAOBAO.split("\n", 1)[1]
    spec = ImportSpec(
        columns=TAOBAO_SPEC.columns,
        types=TAOBAO_SPEC.types,
        fieldnames=("user", "item", "category", "behavior", "ts"),
    )
    stats = ImportStats()
    events = import_text(body, spec, stats=stats)
    assert [e["user_id"] for e in events] == ["1", "1", "100", "100"]
    assert stats.first_line["behavior: unknown value"] == 5


def test_bad_rows_are_rejected_with_a_reason_naming_the_column():
    text = (
        "when,who,what,kind,cost,in_stock\n"
        "1511544070,u1,i1,pv,9.5,yes\n"  # ok
        "1511544071,,i1,pv,1,1\n"  # empty user
        "1511544072,u1,i1,pv,cheap,1\n"  # bad price
        "1511544073,u1,i1,pv,-2,1\n"  # negative price
        "1511544074,u1,i1,pv,1,maybe\n"  # bad boolean
        "yesterday,u1,i1,pv,1,1\n"  # not a number in a seconds file
        "1511544075,u1,i1\n"  # too short
        "1511544076,u1,i1,pv,1,1,extra\n"  # too long
        "1511544077,u1,i1,click,1,1\n"  # unknown kind
        "1511544078000,u1,i1,pv,1,0\n"  # milliseconds in a seconds file
        "1511544079,u2,i2,buy,,\n"  # ok: optional cells empty
    )
    spec = ImportSpec(
        columns=parse_mapping(
            "ts=when,user_id=who,item_id=what,type=kind,price=cost,available=in_stock"
        ),
        types={"pv": "view", "buy": "purchase"},
    )
    stats = ImportStats()
    events = import_text(text, spec, stats=stats)
    assert len(events) == 2
    assert events[0]["item"] == {"price": 9.5, "available": True}
    assert "item" not in events[1]
    assert events[1]["type"] == "purchase"
    assert stats.rejected == {
        "who: empty": 1,
        "cost: not a number": 1,
        "cost: negative": 1,
        "in_stock: not a boolean (1/0, true/false, yes/no)": 1,
        "when: not a number (file uses epoch s)": 1,
        "kind: missing (row too short)": 1,
        "row: more fields than the header's 6": 1,
        "kind: unknown value": 1,
        "when: too large for epoch s": 1,
    }
    assert stats.rows == stats.accepted + sum(stats.rejected.values()) == 11
    assert stats.first_line["who: empty"] == 3
    assert stats.first_line["when: too large for epoch s"] == 11


def test_missing_mapped_column_is_an_error_before_any_row():
    seen: list[int] = []
    with pytest.raises(ImportSpecError, match=r"item_id=item_id.*'itemid'"):
        next(
            import_csv(
                io.StringIO(RETAILROCKET),
                ImportSpec(
                    columns={"ts": "timestamp", "user_id": "visitorid", "item_id": "item_id"}
                    | {"type": "event"}
                ),
                progress=seen.append,
            )
        )
    assert seen == []


def test_empty_file_is_an_error():
    with pytest.raises(ImportSpecError, match="empty"):
        import_text("", RETAILROCKET_SPEC)


@pytest.mark.parametrize(
    ("cells", "unit"),
    [
        (["1433221332117", "1433224214164"], "ms"),
        (["1511544070", "1511544070.5"], "s"),
        (["2017-11-24T17:21:10+08:00", "2017-11-24 09:21:10"], "iso"),
        (["2017-11-24T17:21:10Z", "2017-11-24T17:21:11Z", "1511544070"], "iso"),
        (["1511544070", "1511544071", "garbage"], "s"),
        ([], "iso"),
    ],
)
def test_detect_ts_unit(cells, unit):
    assert detect_ts_unit(cells) == unit


def test_iso_file_parses_offsets_and_rejects_numbers():
    text = (
        "t,u,i,e\n"
        "2017-11-24T17:21:10+08:00,u,i,view\n"
        "2017-11-24 09:21:10,u,i,view\n"
        "1511544070,u,i,view\n"
        "not a time,u,i,view\n"
    )
    spec = ImportSpec(columns=parse_mapping("ts=t,user_id=u,item_id=i,type=e"))
    stats = ImportStats()
    events = import_text(text, spec, stats=stats)
    # Both rows are 2017-11-24 09:21:10 UTC = 1511515270.
    assert [e["ts"] for e in events] == [1511515270.0, 1511515270.0]
    assert stats.ts_unit == "iso"
    assert stats.rejected == {
        "t: a number, but the file's timestamps are ISO-8601": 1,
        "t: not an ISO-8601 time": 1,
    }


def test_explicit_unit_overrides_detection():
    text = "t,u,i,e\n1511544070,u,i,view\n"
    spec = ImportSpec(columns=parse_mapping("ts=t,user_id=u,item_id=i,type=e"), ts_unit="ms")
    stats = ImportStats()
    (event,) = import_text(text, spec, stats=stats)
    assert event["ts"] == 1511544.07
    assert stats.ts_unit == "ms"


def test_without_a_type_mapping_values_must_be_contract_types():
    text = "t,u,i,e\n1,u,i,cart\n2,u,i,addtocart\n"
    spec = ImportSpec(columns=parse_mapping("ts=t,user_id=u,item_id=i,type=e"))
    stats = ImportStats()
    assert [e["type"] for e in import_text(text, spec, stats=stats)] == ["cart"]
    assert stats.rejected == {"e: unknown value": 1}


def test_event_id_session_and_value_columns_are_carried_over():
    text = "id,sess,t,u,i,e,amount,shop\nev-1,s9,10,u,i,purchase,19.99,shop-3\n"
    spec = ImportSpec(
        columns=parse_mapping(
            "event_id=id,session_id=sess,ts=t,user_id=u,item_id=i,type=e,value=amount,seller=shop"
        )
    )
    (event,) = import_text(text, spec)
    assert event == {
        "event_id": "ev-1",
        "session_id": "s9",
        "ts": 10.0,
        "user_id": "u",
        "item_id": "i",
        "type": "purchase",
        "value": 19.99,
        "item": {"seller": "shop-3"},
    }


def test_path_with_byte_order_mark_semicolons_and_blank_lines(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("\ufefft;u;i;e\n1;u;i;view\n\n2;u;i;cart\n", encoding="utf-8")
    spec = ImportSpec(columns=parse_mapping("ts=t,user_id=u,item_id=i,type=e"), delimiter=";")
    stats = ImportStats()
    events = list(import_csv(path, spec, stats=stats))
    assert [e["type"] for e in events] == ["view", "cart"]
    assert stats.rows == 2


def test_progress_reports_rows_read(monkeypatch):
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 2)
    seen: list[int] = []
    list(import_csv(io.StringIO(TAOBAO), TAOBAO_SPEC, progress=seen.append))
    assert seen == [2, 4, 5]


def test_parse_mapping_trims_and_explains_errors():
    assert parse_mapping(" a = b ,c=d,") == {"a": "b", "c": "d"}
    with pytest.raises(ImportSpecError, match="expected key=value"):
        parse_mapping("a=b,c")
    with pytest.raises(ImportSpecError, match="expected key=value"):
        parse_mapping("=x")
    with pytest.raises(ImportSpecError, match="twice"):
        parse_mapping("a=b,a=c")
    with pytest.raises(ImportSpecError, match="pairs"):
        parse_mapping(" , ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": {"ts": "t", "user_id": "u", "item_id": "i", "type": "e", "colour": "c"}},
         "unknown column key"),
        ({"columns": {"ts": "t", "user_id": "u", "item_id": "i"}}, "must map type"),
        ({"columns": {"ts": "t", "user_id": "u", "item_id": "i", "type": "e"},
          "types": {"pv": "pageview"}}, "'pageview' is not one of"),
        ({"columns": {"ts": "t", "user_id": "u", "item_id": "i", "type": "e"},
          "ts_unit": "us"}, "ts_unit"),
    ],
)  # fmt: skip
def test_spec_is_checked_up_front(kwargs, message):
    with pytest.raises(ImportSpecError, match=message):
        ImportSpec(**kwargs)


# -- real files as they are: gzip, no header, positions, tabs, a time range ------------
TAOBAO_TYPES = parse_mapping("pv=click,fav=favorite,cart=cart,buy=purchase")
TAOBAO_POSITIONS = parse_mapping("user_id=0,item_id=1,category=2,type=3,ts=4")


def _gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def test_gzip_headerless_positional_csv_with_bad_rows_and_a_time_range(tmp_path):
    path = _gz(
        tmp_path / "UserBehavior.csv.gz",
        "1,2268318,2520377,pv,1511544070\n"
        "1,2333346,2520771,fav,1511561733\n"
        "1,2333346,2520771,share,1511561734\n"  # unknown behaviour
        "1,2333346,2520771,cart\n"  # too short
        "1,2333346,2520771,cart,1511561735,9\n"  # too long
        "2,,2520771,buy,1511561736\n"  # empty item
        "2,77,2520771,buy,1411561736\n"  # before --since
        "2,77,2520771,buy,1512316800\n"  # at --until: outside
        "2,77,2520771,buy,1511561737\n",
    )
    spec = ImportSpec(
        columns=TAOBAO_POSITIONS,
        types=TAOBAO_TYPES,
        header=False,
        delimiter="auto",
        since=1511539200,
        until=1512316800,
    )
    stats = ImportStats()
    events = list(import_csv(path, spec, stats=stats))
    assert [(e["user_id"], e["item_id"], e["type"]) for e in events] == [
        ("1", "2268318", "click"),
        ("1", "2333346", "favorite"),
        ("2", "77", "purchase"),
    ]
    assert events[0]["item"] == {"category": "2520377"} and events[0]["ts"] == 1511544070.0
    assert stats.rejected == {
        "column 3 (type): unknown value": 1,
        "column 4 (ts): missing (row too short)": 1,
        "row: more fields than the first row's 5": 1,
        "column 1 (item_id): empty": 1,
        "column 4 (ts): outside the time range": 2,
    }
    assert stats.first_line["column 4 (ts): outside the time range"] == 7
    assert stats.rows == 9 and stats.accepted == 3


def test_tab_separated_file_of_one_interaction_type(tmp_path):
    path = _gz(tmp_path / "u.data.gz", "196\t242\t3\t881250949\n186\t302\tx\t891717742\n")
    spec = ImportSpec(
        columns=parse_mapping("user_id=0,item_id=1,value=2,ts=3"),
        header=False,
        delimiter="auto",
        every_type="purchase",
    )
    stats = ImportStats()
    events = list(import_csv(path, spec, stats=stats))
    assert [(e["user_id"], e["item_id"], e["type"], e["value"]) for e in events] == [
        ("196", "242", "purchase", 3.0)
    ]
    assert stats.rejected == {"column 2 (value): not a number": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": {"ts": "t", "user_id": "0", "item_id": "1", "type": "2"}, "header": False},
         "0-based positions: ts=t"),
        ({"columns": {"ts": "3", "user_id": "0", "item_id": "1"}, "every_type": "like"},
         "'like' is not one of"),
        ({"columns": {"ts": "3", "user_id": "0", "item_id": "1", "type": "2"},
          "every_type": "click"}, "give one"),
        ({"columns": {"ts": "3", "user_id": "0", "item_id": "1", "type": "2"},
          "delimiter": "ab"}, "one character"),
        ({"columns": {"ts": "3", "user_id": "0", "item_id": "1", "type": "2"},
          "since": 5.0, "until": 5.0}, "not before"),
    ],
)  # fmt: skip
def test_new_spec_options_are_checked_up_front(kwargs, message):
    with pytest.raises(ImportSpecError, match=message):
        ImportSpec(**kwargs)


def test_a_position_beyond_the_first_row_is_an_error_before_any_row():
    spec = ImportSpec(columns=TAOBAO_POSITIONS | {"ts": "7"}, types=TAOBAO_TYPES, header=False)
    with pytest.raises(ImportSpecError, match=r"ts=7 beyond the first row's 5 fields"):
        import_text("1,2,3,pv,1511544070\n", spec)


def _need_data(name: str) -> Path:
    path = shared_data_dir() / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared real data sets are not on this machine)")
    return path


@pytest.mark.parametrize(
    ("name", "spec", "rows", "accepted", "types"),
    [
        ("taobao_dev_users.csv.gz",
         ImportSpec(columns=TAOBAO_POSITIONS, types=TAOBAO_TYPES, header=False,
                    delimiter="auto", since=1511539200, until=1512316800),
         42262, 42244, {"click", "favorite", "cart", "purchase"}),
        ("taobao_2h_slice.csv.gz",
         ImportSpec(columns=TAOBAO_POSITIONS, types=TAOBAO_TYPES, header=False,
                    delimiter="auto"),
         110300, 110300, {"click", "favorite", "cart", "purchase"}),
        ("ml-100k/u.data.gz",
         ImportSpec(columns=parse_mapping("user_id=0,item_id=1,value=2,ts=3"), header=False,
                    delimiter="auto", every_type="purchase"),
         100000, 100000, {"purchase"}),
    ],
)  # fmt: skip
def test_the_real_files_import_as_they_are(name, spec, rows, accepted, types):
    stats = ImportStats()
    events = list(import_csv(_need_data(name), spec, stats=stats))
    assert (stats.rows, stats.accepted, len(events)) == (rows, accepted, accepted)
    assert {e["type"] for e in events} == types
    assert stats.ts_unit == "s"
    if rows != accepted:  # the handful of Taobao rows outside the documented nine days
        assert stats.rejected == {"column 4 (ts): outside the time range": rows - accepted}
