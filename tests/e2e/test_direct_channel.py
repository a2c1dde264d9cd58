"""The risk gate hands approved legs to the connection by its direct channel, through restarts of either."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from actors import direct_channel as dc
from core import order_group as og
from core.orders import new_order
from core.types import OrderType, Side, TimeInForce
from tests.e2e.harness import SUPERVISOR, System, scripted, wait_for

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not dc.SUPPORTED, reason="direct channels exist on Linux only")]


def _resting(gid: str, limit: str) -> og.OrderGroup:
    return og.single(gid, new_order(ref=og.leg_ref(gid, og.ENTRY), symbol="AAPL", side=Side.BUY,
                                    quantity=Decimal(10), order_type=OrderType.LMT, limit_price=Decimal(limit),
                                    tif=TimeInForce.GTC))


def _direct_in(system: System) -> int:
    status = system.actor_status(system.address(SUPERVISOR, "tws"))
    return dict(status.counters).get("direct_in", 0)


def _placed_once(system: System, gid: str) -> None:
    ref = og.leg_ref(gid, og.ENTRY)
    wait_for(lambda: ref in system.orders_per_ref(), 10, f"{ref} at the simulator")
    assert system.orders_per_ref()[ref] == 1


def _restart_and_wait_for_offer(system: System, key: str, offers: int) -> None:
    """SIGKILL core actor `key`, wait for its next incarnation and for risk's `offers`-th channel offer."""
    old = system.kill_actor(SUPERVISOR, key)
    system.running(SUPERVISOR, key, incarnation=old.incarnation + 1)
    wait_for(lambda: len(system.log_lines("risk: approved orders go to the connection by its direct channel"))
             >= offers, 10, f"the offer after {key} restarted")


def test_approved_legs_take_the_direct_channel_and_again_after_either_end_restarts(
        launch: Callable[..., System], tmp_path: Path) -> None:
    system = launch((scripted("AAPL", tmp_path, ("100", "100")),))
    system.step(1)
    system.place(_resting("d1", "95"))
    _placed_once(system, "d1")
    assert _direct_in(system) == 1  # not by thespian: the connection read it from its inbox

    # A new connection offers a new inbox; risk uses it once it knows the new address.
    _restart_and_wait_for_offer(system, "tws", offers=2)
    system.place(_resting("d2", "94"))
    _placed_once(system, "d2")
    wait_for(lambda: _direct_in(system) == 1, 10, "d2 through the new connection's inbox")

    # A new risk manager is offered the inbox again (it knows no channel).
    _restart_and_wait_for_offer(system, "risk", offers=3)
    system.place(_resting("d3", "93"))
    _placed_once(system, "d3")
    assert _direct_in(system) == 2
    assert set(system.orders_per_ref().values()) == {1}  # nothing was sent twice
