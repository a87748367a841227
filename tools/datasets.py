"""Readers that map the bundled public datasets onto the UserEvent schema (pure Python).

Taobao UserBehavior (pv->view, cart, fav, buy->purchase; seconds -> ms) and UCI Online Retail
(purchase lines with price and quantity; cancellations are skipped). event_id is stable across
runs: dataset tag + line number, so replaying a file twice produces the same ids.
"""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

from udfs.profile import Event

TAOBAO_TYPES = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "purchase"}
TAOBAO_HEAD = "UserBehavior_head_84k.csv"
TAOBAO_SLICE = "UserBehavior_timeslice_2h.csv"


def read_taobao(path: Path, limit: Optional[int] = None, sort_by_time: bool = False) -> list[Event]:
    """Events of a Taobao UserBehavior CSV (no header). The truncated last line of the head file
    (no timestamp) is skipped. ``sort_by_time`` gives a stable time order (a realistic stream)."""
    tag = "tb-" + Path(path).stem.split("_")[1].lower()
    events: list[Event] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if len(row) != 5 or not row[4].strip():
                continue
            user, item, cat, behaviour, ts = row
            events.append(
                Event(
                    event_id=f"{tag}-{lineno}",
                    user_id=user,
                    event_type=TAOBAO_TYPES[behaviour],
                    item_id=item,
                    category_id=cat,
                    price=None,
                    quantity=None,
                    event_time=int(ts) * 1000,
                    session_id=None,
                    shop_id="taobao",
                )
            )
            if limit is not None and not sort_by_time and len(events) >= limit:
                break
    if sort_by_time:
        events.sort(key=lambda e: e.event_time)
        if limit is not None:
            events = events[:limit]
    return events


def read_online_retail(path: Path, limit: Optional[int] = None) -> list[Event]:
    """Purchase lines with a CustomerID; cancellations (invoice 'C...') and non-positive
    quantities or prices are left out. Category = the stock code's first 3 characters."""
    events: list[Event] = []
    with gzip.open(path, "rt", newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.DictReader(fh), start=2):
            if not row["CustomerID"] or row["InvoiceNo"].startswith("C"):
                continue
            qty, price = int(row["Quantity"]), float(row["UnitPrice"])
            if qty <= 0 or price <= 0:
                continue
            ts = datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            events.append(
                Event(
                    event_id=f"or-{lineno}",
                    user_id=row["CustomerID"],
                    event_type="purchase",
                    item_id=row["StockCode"],
                    category_id=row["StockCode"][:3],
                    price=price,
                    quantity=qty,
                    event_time=int(ts.timestamp() * 1000),
                    session_id=row["InvoiceNo"],
                    shop_id="online_retail",
                )
            )
            if limit is not None and len(events) >= limit:
                break
    return events
