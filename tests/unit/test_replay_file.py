"""Parsing a user's event file for `tools.replay --file`: every bad line is reported with its number and
skipped, the good ones come out as the Events the job would accept."""

import gzip
import json
from pathlib import Path

import pytest

from tools import event_file, replay
from tools.event_file import BadRecord, FileError, Rules, check, read_csv, read_jsonl
from udfs.profile import Event

NOW = 1_700_000_000_000
RULES = Rules.from_schema()
GOOD = {"event_id": "e1", "user_id": "u1", "event_type": "view", "item_id": "i1", "category_id": "c1",
        "event_time": NOW - 1000}


def line(**changes: object) -> str:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def test_rules_come_from_user_event_avsc():
    assert {"view", "cart", "fav", "purchase", "erase"} == RULES.types
    assert RULES.max_string == 256
    assert RULES.bounds["price"] == (0, 1_000_000) and RULES.bounds["quantity"] == (1, 100_000)
    assert RULES.max_future_ms["event_time"] == 86_400_000


def test_a_good_record_becomes_an_event_with_nulls_for_missing_optionals():
    ev = check(GOOD, RULES, NOW)
    assert ev == Event(event_id="e1", user_id="u1", event_type="view", item_id="i1", category_id="c1", price=None,
                       quantity=None, event_time=NOW - 1000, session_id=None, shop_id=None)
    full = check({**GOOD, "event_type": "purchase", "price": 9.5, "quantity": 2, "session_id": "s", "shop_id": "x"},
                 RULES, NOW)
    assert full.price == 9.5 and full.quantity == 2 and full.shop_id == "x"


BAD = [
    # (changes to a good record, words of the reason)
    ({"user_id": ...}, "missing field user_id"),
    ({"user_id": None}, "missing field user_id"),
    ({"user_id": "  "}, "user_id is empty"),
    ({"item_id": "x" * 257}, "item_id has 257 characters > 256"),
    ({"user_id": 42}, "user_id: 42 is not a string"),
    ({"event_id": "e\ud800"}, "event_id is not valid UTF-8"),  # JSON "\ud800": a str that cannot be encoded
    ({"event_type": "click"}, "event_type 'click' is not one of"),
    ({"price": -1}, "price=-1.0 below the minimum 0"),
    ({"price": 2_000_000}, "above the maximum 1000000"),
    ({"price": "9.99"}, "price: '9.99' is not a number"),
    ({"price": True}, "is not a number"),
    ({"quantity": 0}, "quantity=0 below the minimum 1"),
    ({"quantity": 1.5}, "quantity: 1.5 is not a whole number"),
    ({"event_time": 5}, "below the minimum 946684800000"),
    ({"event_time": NOW + 2 * 86_400_000}, "ms in the future"),
    ({"event_time": "2024-01-01"}, "is not a number"),
    ({"colour": "red"}, "unknown field(s) colour"),
]


@pytest.mark.parametrize("changes,reason", BAD, ids=[r for _, r in BAD])
def test_each_rule_of_the_schema_is_checked(changes, reason):
    with pytest.raises(BadRecord) as err:
        check(json.loads(line(**changes)), RULES, NOW)
    assert reason in str(err.value)


def test_json_lines_report_every_bad_line_with_its_number(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [
        line(event_id="a"),                 # 1 good
        "",                                 # 2 blank: not an event, not an error
        "{not json",                        # 3
        line(event_id="b", price=-5),       # 4
        "[1, 2]",                           # 5
        line(event_id="c", event_type="cart"),  # 6 good
    ]
    path.write_text("\n".join(lines) + "\n")
    items = list(read_jsonl(path, RULES, NOW))
    assert [n for n, _ in items] == [1, 3, 4, 5, 6]
    good = [i for _, i in items if isinstance(i, Event)]
    bad = {n: i for n, i in items if isinstance(i, str)}
    assert [e.event_id for e in good] == ["a", "c"]
    assert bad[3].startswith("not JSON") and "below the minimum" in bad[4] and "not an object" in bad[5]


def test_a_line_that_is_not_utf8_fails_alone(tmp_path):
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(line(event_id="a").encode() + b"\n" + b'{"user_id": "\xff"}\n' + line(event_id="b").encode() + b"\n")
    items = list(read_jsonl(path, RULES, NOW))
    assert [(n, i if isinstance(i, str) else i.event_id) for n, i in items] == [(1, "a"), (2, "not UTF-8"), (3, "b")]


def test_csv_with_a_column_mapping_constants_and_bad_rows(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "id,customer,what,sku,cat,unit_price,qty,ts,extra\n"
        "1,c1,purchase,s1,k1,2.50,3,2023-11-14T22:13:00Z,x\n"      # line 2 good (ISO time)
        "2,c1,view,s2,k1,,,1699999000000,x\n"                       # line 3 good (ms, empty optionals)
        "3,,view,s2,k1,,,1699999000000,x\n"                         # line 4 no user
        "4,c2,view,s2,k1,abc,,1699999000000,x\n"                    # line 5 price not a number
        "5,c2,view,s2\n"                                            # line 6 short row
        '6,c3,fav,"s,3",k2,,,yesterday,x\n'                         # line 7 time unreadable
        "7,c3,cart,s4,k2,,2,1699999000000,x\n"                      # line 8 good
    )
    mapping = event_file.parse_mapping(
        ["event_id=id,user_id=customer,event_type=what", "item_id=sku", "category_id=cat,price=unit_price",
         "quantity=qty,event_time=ts"], RULES, "--map")
    items = list(read_csv(path, RULES, mapping, {"shop_id": "acme"}, now_ms=NOW))
    good = {n: i for n, i in items if isinstance(i, Event)}
    bad = {n: i for n, i in items if isinstance(i, str)}
    assert sorted(good) == [2, 3, 8] and sorted(bad) == [4, 5, 6, 7]
    assert good[2].event_time == 1_699_999_980_000 and good[2].price == 2.5 and good[2].quantity == 3
    assert good[3].price is None and all(e.shop_id == "acme" for e in good.values())
    assert "missing field user_id" in bad[4] and "price: 'abc' is not a number" in bad[5]
    assert "4 columns, the header has 9" in bad[6] and "neither epoch ms nor ISO-8601" in bad[7]


def test_csv_columns_named_like_the_fields_need_no_mapping_and_seconds_work(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("event_id,user_id,event_type,item_id,category_id,event_time\n1,u,view,i,c,1699999000\n")
    [(n, ev)] = list(read_csv(path, RULES, time_unit="s", now_ms=NOW))
    assert n == 2 and ev.event_time == 1_699_999_000_000


def test_file_level_mistakes_stop_before_any_event(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(FileError, match="column 'cust' .*not in the header"):
        list(read_csv(path, RULES, {"user_id": "cust"}, now_ms=NOW))
    with pytest.raises(FileError, match="'colour' is no field"):
        event_file.parse_mapping(["colour=c"], RULES, "--map")
    with pytest.raises(FileError, match="not FIELD=VALUE"):
        event_file.parse_mapping(["user_id"], RULES, "--map")
    with pytest.raises(FileError, match="--format"):
        event_file.detect_format(Path("events.txt"))
    assert event_file.detect_format(Path("e.ndjson.gz")) == "jsonl" and event_file.detect_format(Path("e.CSV")) == "csv"


def test_dry_run_prints_bad_lines_and_a_summary_and_fails(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    path.write_text(line(event_id="a") + "\n" + line(event_id="b", event_type="click") + "\n")
    assert replay.main(["--file", str(path), "--dry-run", "--no-progress"]) == 1
    out = capsys.readouterr()
    assert f"{path}:2: skipped: event_type 'click'" in out.err
    assert f"{path}: 2 records, 1 checked (dry run, nothing published), 1 bad lines skipped" in out.out
    path.write_text(line(event_id="a") + "\n")
    assert replay.main(["--file", str(path), "--dry-run"]) == 0
