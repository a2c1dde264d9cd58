"""Journaled values pickle to the same bytes under any hash seed, and come back equal."""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import fields
import subprocess
import sys
from pathlib import Path

from core import order_group as og
from core.orders import new_order
from core.position import Position
from core.types import OrderType, Side

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import hashlib, pickle
from dataclasses import replace
from core import order_group as og
from core.orders import new_order
from core.position import Position
from core.types import OrderType, Side
ids = frozenset(f"0000e0d5.{i:08x}.01.01" for i in range(12))
position = Position(symbol="AAPL", exec_ids=ids)
entry = replace(new_order(ref="g1:entry", symbol="AAPL", side=Side.BUY, quantity=10, order_type=OrderType.MKT),
                exec_ids=ids)
group = replace(og.single("g1", entry), cancel_requested=frozenset(f"g1:leg{i}" for i in range(12)))
print(hashlib.sha256(pickle.dumps((position, entry, group), protocol=pickle.HIGHEST_PROTOCOL)).hexdigest())
"""


def _digest(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    return out.stdout.strip()


def test_positions_orders_and_groups_pickle_to_the_same_bytes_under_any_hash_seed() -> None:
    digests = {_digest(seed) for seed in ("1", "2", "3", "4")}
    assert len(digests) == 1, digests


def test_a_canonical_pickle_comes_back_equal_with_its_sets() -> None:
    ids = frozenset({"b.01", "a.01", "c.01"})
    position = Position(symbol="MSFT", exec_ids=ids)
    order = new_order(ref="g2:entry", symbol="MSFT", side=Side.SELL, quantity=5, order_type=OrderType.MKT)
    group = og.single("g2", order)
    for value in (position, order, group):
        back = pickle.loads(pickle.dumps(value))
        assert back == value and type(back) is type(value)
    assert pickle.loads(pickle.dumps(position)).exec_ids == ids


def test_a_canonical_pickle_made_before_a_field_was_added_comes_back_with_that_fields_default() -> None:
    from core.canonical import _rebuild

    names = tuple(f.name for f in fields(Position) if f.name != "exec_floor")
    values = tuple(getattr(Position(symbol="IBM"), n) for n in names)
    old = _rebuild(Position, names, values, ("exec_ids",))
    assert old == Position(symbol="IBM") and old.exec_floor == 0
