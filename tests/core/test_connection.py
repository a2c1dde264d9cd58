"""Tests for core.connection: transitions, code classes, sync, backoff, heartbeat, ladder, order ids."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from itertools import combinations

import pytest
from hypothesis import given, settings, strategies as st

from core.config import BrokerConfig, ReconnectConfig
from core.connection import (
    CODE_CLASSES,
    DATA_FARM_DOWN,
    DATA_FARM_INACTIVE,
    DATA_FARM_OK,
    FARM_OF,
    Alert,
    AlertLevel,
    BrokerCode,
    CloseSocket,
    CodeClass,
    Command,
    ConnectionConfig,
    Connection,
    ConnectRequested,
    ConnState,
    DisconnectRequested,
    Event,
    HaltTrading,
    HeartbeatAnswered,
    HeartbeatSent,
    HoldOrders,
    NextValidId,
    OpenSocket,
    OrderIdSeen,
    PublishDataHealth,
    PublishState,
    ReleaseOrders,
    RequestSync,
    ResubscribeMarketData,
    ScheduleReconnect,
    SendHeartbeat,
    SocketClosed,
    SocketConnected,
    SocketFailed,
    SyncStep,
    SyncStepDone,
    ThrottleOutbound,
    Tick,
    backoff_ns,
    classify,
    config_from_broker,
    decide,
    error_count,
    jitter_unit,
    new_connection,
    next_order_id,
    next_wakeup_ns,
    orders_allowed,
)
from core.errors import ConfigError, InvalidConnectionEvent
from messages.connection import ConnectionState

S = 1_000_000_000
CFG = ConnectionConfig(host="127.0.0.1", port=4002, client_id=7)
HWM = 99
FULL_SYNC = (SyncStep.OPEN_ORDERS, SyncStep.COMPLETED_ORDERS, SyncStep.POSITIONS,
             SyncStep.EXECUTIONS, SyncStep.MARKET_DATA)


# ---------------------------------------------------------------- helpers


def run(conn: Connection, *events: Event) -> tuple[Connection, list[Command]]:
    out: list[Command] = []
    for ev in events:
        conn, cmds = decide(conn, ev)
        out.extend(cmds)
    return conn, out


def kinds(cmds: list[Command] | tuple[Command, ...]) -> list[str]:
    return [type(c).__name__ for c in cmds]


def fresh(seed: int = 1, **cfg: object) -> Connection:
    return new_connection(replace(CFG, **cfg), order_id_hwm=HWM, seed=seed)  # type: ignore[arg-type]


def connecting(t: int = 0, **cfg: object) -> Connection:
    return run(fresh(**cfg), ConnectRequested(at_ns=t))[0]


def synchronizing(t: int = 0, **cfg: object) -> Connection:
    return run(connecting(t, **cfg), SocketConnected(at_ns=t, server_version=226),
               NextValidId(at_ns=t, order_id=1))[0]


def ready(t: int = 0, **cfg: object) -> Connection:
    conn = synchronizing(t, **cfg)
    return run(conn, *(SyncStepDone(at_ns=t, step=s) for s in FULL_SYNC))[0]


def degraded(t: int = 0, **cfg: object) -> Connection:
    return run(ready(t, **cfg), BrokerCode(at_ns=t, code=1100))[0]


def waiting(t: int = 0, **cfg: object) -> Connection:
    """DISCONNECTED after a failed connect, with a reconnect scheduled."""
    return run(connecting(t, **cfg), SocketFailed(at_ns=t, reason="refused"))[0]


BUILDERS = {"idle": fresh, "waiting": waiting, "connecting": connecting,
            "synchronizing": synchronizing, "ready": ready, "degraded": degraded}


# ---------------------------------------------------------------- codes


def test_code_classes_are_disjoint() -> None:
    for (a, ca), (b, cb) in combinations(CODE_CLASSES.items(), 2):
        assert not ca & cb, f"{a} and {b} share {ca & cb}"


@pytest.mark.parametrize(("code", "expected"),
                         [(code, k) for k, codes in CODE_CLASSES.items() for code in sorted(codes)]
                         + [(0, CodeClass.UNKNOWN), (9999, CodeClass.UNKNOWN)])
def test_classify_returns_the_class_that_names_the_code(code: int, expected: CodeClass) -> None:
    assert classify(code) is expected


@pytest.mark.parametrize(("code", "cls"), [
    (1100, CodeClass.LINK_LOST), (2110, CodeClass.LINK_LOST),
    (1101, CodeClass.LINK_RESTORED_DATA_LOST), (1102, CodeClass.LINK_RESTORED_DATA_KEPT),
    (2104, CodeClass.DATA_FARM_OK), (2106, CodeClass.DATA_FARM_OK), (2158, CodeClass.DATA_FARM_OK),
    (2103, CodeClass.DATA_FARM_DOWN), (2108, CodeClass.DATA_FARM_INACTIVE),
    (326, CodeClass.CLIENT_ID_IN_USE), (103, CodeClass.DUPLICATE_ORDER_ID),
    (161, CodeClass.CANCEL_RACE), (10148, CodeClass.CANCEL_RACE),
    (100, CodeClass.PACING), (10349, CodeClass.INFORMATIONAL)])
def test_classify_matches_the_protocol_reference(code: int, cls: CodeClass) -> None:
    assert classify(code) is cls


def test_every_farm_code_names_a_farm() -> None:
    assert set(FARM_OF) == DATA_FARM_DOWN | DATA_FARM_INACTIVE | DATA_FARM_OK


def test_conn_state_values_match_the_message_enum() -> None:
    assert [s.value for s in ConnState] == [s.value for s in ConnectionState]


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize("bad", [
    {"connect_timeout_ns": 0}, {"reconnect_initial_ns": -1}, {"reconnect_max_ns": 1},
    {"heartbeat_timeout_ns": 10 * S}, {"jitter": 1.5}, {"jitter": -0.1}, {"sync_step_retries": -1},
    {"outage_halt_ns": 10 * S}, {"pacing_msgs_per_s": 51}, {"pacing_msgs_per_s": 0},
    {"port": 0}, {"client_id": -1}, {"error_alert_after": 0}, {"heartbeat_interval_ns": 1.5},
])
def test_new_connection_rejects_invalid_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        new_connection(replace(CFG, **bad), order_id_hwm=0)  # type: ignore[arg-type]


@pytest.mark.parametrize("hwm", [-1, True, 1.0])
def test_new_connection_rejects_invalid_high_water_mark(hwm: object) -> None:
    with pytest.raises(ConfigError):
        new_connection(CFG, order_id_hwm=hwm)  # type: ignore[arg-type]


def test_new_connection_starts_disconnected_with_floor_above_hwm() -> None:
    conn = fresh()
    assert (conn.state, conn.next_id, conn.wanted, next_wakeup_ns(conn)) == \
        (ConnState.DISCONNECTED, HWM + 1, False, None)
    with pytest.raises(FrozenInstanceError):
        conn.next_id = 5  # type: ignore[misc]


def test_config_from_broker_converts_seconds_and_overrides_the_address() -> None:
    broker = BrokerConfig(client_id=3, connect_timeout_s=2.5, heartbeat_interval_s=4.0,
                          heartbeat_timeout_s=9.0, pacing_msgs_per_s=40,
                          reconnect=ReconnectConfig(initial_s=0.5, max_s=30.0, jitter=0.1))
    cfg = config_from_broker(broker, port=5555)
    assert (cfg.host, cfg.port, cfg.client_id) == ("127.0.0.1", 5555, 3)
    assert (cfg.connect_timeout_ns, cfg.heartbeat_interval_ns, cfg.heartbeat_timeout_ns) == \
        (2_500_000_000, 4 * S, 9 * S)
    assert (cfg.reconnect_initial_ns, cfg.reconnect_max_ns, cfg.jitter, cfg.pacing_msgs_per_s) == \
        (S // 2, 30 * S, 0.1, 40)
    new_connection(cfg, order_id_hwm=0)


def test_decide_rejects_a_value_that_is_not_an_event() -> None:
    with pytest.raises(InvalidConnectionEvent):
        decide(fresh(), "connect")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the connect -> sync -> READY sequence


def test_connect_sync_ready_sequence_issues_each_step_in_order() -> None:
    conn, t = fresh(), 5 * S
    conn, cmds = decide(conn, ConnectRequested(at_ns=t))
    assert cmds == (OpenSocket(host="127.0.0.1", port=4002, client_id=7),
                    PublishState(state=ConnState.CONNECTING, previous=ConnState.DISCONNECTED,
                                 reason="connect requested"))
    conn, cmds = decide(conn, SocketConnected(at_ns=t, server_version=226))
    assert cmds == () and conn.state is ConnState.CONNECTING and conn.server_version == 226
    # nextValidId below the journaled mark: the floor is hwm + 1, never the broker's lower id.
    conn, cmds = decide(conn, NextValidId(at_ns=t, order_id=42))
    assert conn.next_id == HWM + 1
    assert cmds == (PublishState(state=ConnState.SYNCHRONIZING, previous=ConnState.CONNECTING,
                                 reason="connected"),
                    RequestSync(step=SyncStep.OPEN_ORDERS))
    expected_next = [RequestSync(step=SyncStep.COMPLETED_ORDERS), RequestSync(step=SyncStep.POSITIONS),
                     RequestSync(step=SyncStep.EXECUTIONS), ResubscribeMarketData()]
    for step, nxt in zip(FULL_SYNC, expected_next):
        assert not orders_allowed(conn)
        conn, cmds = decide(conn, SyncStepDone(at_ns=t, step=step))
        assert cmds == (nxt,)
    conn, cmds = decide(conn, SyncStepDone(at_ns=t, step=SyncStep.MARKET_DATA))
    assert cmds == (PublishState(state=ConnState.READY, previous=ConnState.SYNCHRONIZING,
                                 reason="synchronized"),
                    ReleaseOrders(next_order_id=HWM + 1))
    assert orders_allowed(conn) and conn.attempt == 0 and conn.resubscribe is False


def test_next_valid_id_above_the_mark_becomes_the_floor() -> None:
    conn = run(connecting(), NextValidId(at_ns=0, order_id=500))[0]
    assert conn.next_id == 500 and next_order_id(conn)[1] == 500


def test_old_server_skips_the_completed_orders_step() -> None:
    conn = run(connecting(), SocketConnected(at_ns=0, server_version=149),
               NextValidId(at_ns=0, order_id=1), SyncStepDone(at_ns=0, step=SyncStep.OPEN_ORDERS))[0]
    assert conn.sync_steps[0] is SyncStep.POSITIONS


def test_stale_or_out_of_order_step_done_is_ignored() -> None:
    conn = synchronizing()
    for step in (SyncStep.EXECUTIONS, SyncStep.MARKET_DATA, SyncStep.POSITIONS):
        after, cmds = decide(conn, SyncStepDone(at_ns=0, step=step))
        assert (after, cmds) == (conn, ())


def test_executions_are_requested_only_after_both_order_snapshots() -> None:
    conn, cmds = run(synchronizing(), *(SyncStepDone(at_ns=0, step=s) for s in FULL_SYNC[:3]))
    requested = [c.step for c in cmds if isinstance(c, RequestSync)]
    assert requested == [SyncStep.COMPLETED_ORDERS, SyncStep.POSITIONS, SyncStep.EXECUTIONS]


# ---------------------------------------------------------------- transition table

_C = "CloseSocket"
_P = "PublishState"
_H = "HoldOrders"
_R = "ScheduleReconnect"
_A = "Alert"

# (builder, event, expected state, expected command kinds)
TABLE = [
    # ConnectRequested
    ("idle", ConnectRequested(at_ns=0), ConnState.CONNECTING, ["OpenSocket", _P]),
    ("waiting", ConnectRequested(at_ns=0), ConnState.CONNECTING, ["OpenSocket", _P]),
    ("connecting", ConnectRequested(at_ns=0), ConnState.CONNECTING, []),
    ("ready", ConnectRequested(at_ns=0), ConnState.READY, []),
    # DisconnectRequested
    ("idle", DisconnectRequested(at_ns=0), ConnState.DISCONNECTED, []),
    ("waiting", DisconnectRequested(at_ns=0), ConnState.DISCONNECTED, []),
    ("connecting", DisconnectRequested(at_ns=0), ConnState.DISCONNECTED, [_C, _P]),
    ("synchronizing", DisconnectRequested(at_ns=0), ConnState.DISCONNECTED, [_C, _P]),
    ("ready", DisconnectRequested(at_ns=0), ConnState.DISCONNECTED, [_C, _H, _P]),
    ("degraded", DisconnectRequested(at_ns=0), ConnState.DISCONNECTED, [_C, _P]),
    # SocketConnected is only news while connecting
    ("connecting", SocketConnected(at_ns=0, server_version=226), ConnState.CONNECTING, []),
    ("ready", SocketConnected(at_ns=0, server_version=226), ConnState.READY, []),
    ("idle", SocketConnected(at_ns=0, server_version=226), ConnState.DISCONNECTED, []),
    # SocketFailed / SocketClosed
    ("connecting", SocketFailed(at_ns=0, reason="refused"), ConnState.DISCONNECTED, [_P, _R]),
    ("synchronizing", SocketFailed(at_ns=0, reason="write"), ConnState.DISCONNECTED, [_A, _P, _R]),
    ("ready", SocketFailed(at_ns=0, reason="write"), ConnState.DISCONNECTED, [_A, _H, _P, _R]),
    ("waiting", SocketFailed(at_ns=0, reason="late"), ConnState.DISCONNECTED, []),
    ("connecting", SocketClosed(at_ns=0, reason="eof"), ConnState.DISCONNECTED, [_P, _R]),
    ("synchronizing", SocketClosed(at_ns=0, reason="eof"), ConnState.DISCONNECTED, [_A, _P, _R]),
    ("ready", SocketClosed(at_ns=0, reason="eof"), ConnState.DISCONNECTED, [_A, _H, _P, _R]),
    ("degraded", SocketClosed(at_ns=0, reason="eof"), ConnState.DISCONNECTED, [_A, _P, _R]),
    ("idle", SocketClosed(at_ns=0, reason="eof"), ConnState.DISCONNECTED, []),
    ("waiting", SocketClosed(at_ns=0, reason="eof"), ConnState.DISCONNECTED, []),
    # NextValidId
    ("connecting", NextValidId(at_ns=0, order_id=1), ConnState.SYNCHRONIZING, [_P, "RequestSync"]),
    ("ready", NextValidId(at_ns=0, order_id=1), ConnState.READY, []),
    ("synchronizing", NextValidId(at_ns=0, order_id=1), ConnState.SYNCHRONIZING, []),
    ("idle", NextValidId(at_ns=0, order_id=1), ConnState.DISCONNECTED, []),
    # OrderIdSeen never moves the state
    ("ready", OrderIdSeen(at_ns=0, order_id=5), ConnState.READY, []),
    # SyncStepDone of the current step
    ("synchronizing", SyncStepDone(at_ns=0, step=SyncStep.OPEN_ORDERS), ConnState.SYNCHRONIZING,
     ["RequestSync"]),
    ("ready", SyncStepDone(at_ns=0, step=SyncStep.OPEN_ORDERS), ConnState.READY, []),
    # Heartbeat events never move the state
    ("ready", HeartbeatSent(at_ns=0), ConnState.READY, []),
    ("ready", HeartbeatAnswered(at_ns=0), ConnState.READY, []),
    ("idle", HeartbeatAnswered(at_ns=0), ConnState.DISCONNECTED, []),
    # Tick with no timer due
    ("idle", Tick(now_ns=10**15), ConnState.DISCONNECTED, []),
    ("ready", Tick(now_ns=1), ConnState.READY, []),
    ("waiting", Tick(now_ns=0), ConnState.DISCONNECTED, []),
    # LINK_LOST
    ("ready", BrokerCode(at_ns=0, code=1100), ConnState.DEGRADED, [_A, _H, _P]),
    ("ready", BrokerCode(at_ns=0, code=2110), ConnState.DEGRADED, [_A, _H, _P]),
    ("synchronizing", BrokerCode(at_ns=0, code=1100), ConnState.DEGRADED, [_A, _P]),
    ("degraded", BrokerCode(at_ns=0, code=1100), ConnState.DEGRADED, []),
    ("connecting", BrokerCode(at_ns=0, code=1100), ConnState.CONNECTING, []),
    ("idle", BrokerCode(at_ns=0, code=1100), ConnState.DISCONNECTED, []),
    # LINK_RESTORED_*
    ("degraded", BrokerCode(at_ns=0, code=1101), ConnState.SYNCHRONIZING, [_A, _P, "RequestSync"]),
    ("degraded", BrokerCode(at_ns=0, code=1102), ConnState.SYNCHRONIZING, [_A, _P, "RequestSync"]),
    ("ready", BrokerCode(at_ns=0, code=1101), ConnState.SYNCHRONIZING, [_A, _H, _P, "RequestSync"]),
    ("ready", BrokerCode(at_ns=0, code=1102), ConnState.SYNCHRONIZING, [_A, _H, _P, "RequestSync"]),
    ("synchronizing", BrokerCode(at_ns=0, code=1101), ConnState.SYNCHRONIZING, [_A, "RequestSync"]),
    ("connecting", BrokerCode(at_ns=0, code=1101), ConnState.CONNECTING, []),
    ("waiting", BrokerCode(at_ns=0, code=1102), ConnState.DISCONNECTED, []),
    # SOCKET_PORT_RESET
    ("ready", BrokerCode(at_ns=0, code=1300), ConnState.DISCONNECTED, [_C, _A, _H, _P, _R]),
    ("waiting", BrokerCode(at_ns=0, code=1300), ConnState.DISCONNECTED, []),
    # CLIENT_ID_IN_USE
    ("connecting", BrokerCode(at_ns=0, code=326), ConnState.DISCONNECTED, [_C, _A, _P, _R]),
    ("waiting", BrokerCode(at_ns=0, code=326), ConnState.DISCONNECTED, [_A]),
    # SOCKET_ERRORS (ibapi's own)
    ("connecting", BrokerCode(at_ns=0, code=502), ConnState.DISCONNECTED, [_C, _P, _R]),
    ("ready", BrokerCode(at_ns=0, code=504), ConnState.DISCONNECTED, [_C, _A, _H, _P, _R]),
    ("idle", BrokerCode(at_ns=0, code=502), ConnState.DISCONNECTED, []),
    # data farms: data health only, never the connection or the orders
    ("ready", BrokerCode(at_ns=0, code=2103), ConnState.READY, ["PublishDataHealth"]),
    ("ready", BrokerCode(at_ns=0, code=2105), ConnState.READY, ["PublishDataHealth"]),
    ("ready", BrokerCode(at_ns=0, code=2157), ConnState.READY, ["PublishDataHealth"]),
    ("ready", BrokerCode(at_ns=0, code=2107), ConnState.READY, ["PublishDataHealth"]),
    ("ready", BrokerCode(at_ns=0, code=2108), ConnState.READY, ["PublishDataHealth"]),
    ("synchronizing", BrokerCode(at_ns=0, code=2103), ConnState.SYNCHRONIZING, ["PublishDataHealth"]),
    ("ready", BrokerCode(at_ns=0, code=2104), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=2106), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=2158), ConnState.READY, []),
    # informational and order-level codes change nothing here (the shell routes order codes)
    ("ready", BrokerCode(at_ns=0, code=2109, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=10349, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=201, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=202, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=161, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=10148, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=2102, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=162, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=321, req_id=5), ConnState.READY, []),
    ("ready", BrokerCode(at_ns=0, code=4242), ConnState.READY, []),
    # PACING, DUPLICATE_ORDER_ID, DATA_ENTITLEMENT
    ("ready", BrokerCode(at_ns=0, code=100), ConnState.READY, [_A, "ThrottleOutbound"]),
    ("ready", BrokerCode(at_ns=0, code=103, req_id=150), ConnState.READY, [_A]),
    ("ready", BrokerCode(at_ns=0, code=354, req_id=3), ConnState.READY, [_A]),
]


@pytest.mark.parametrize(("builder", "event", "state", "commands"), TABLE,
                         ids=[f"{b}-{type(e).__name__}{getattr(e, 'code', '')}" for b, e, *_ in TABLE])
def test_transition_table(builder: str, event: Event, state: ConnState, commands: list[str]) -> None:
    conn, cmds = decide(BUILDERS[builder](), event)
    assert conn.state is state
    assert kinds(cmds) == commands


def test_table_covers_every_event_type_and_code_class() -> None:
    events = {type(e) for _, e, *_ in TABLE}
    assert events == set(Event.__args__)  # type: ignore[attr-defined]
    classes = {classify(e.code) for _, e, *_ in TABLE if isinstance(e, BrokerCode)}
    assert classes == set(CodeClass)


def test_orders_are_released_only_on_entering_ready_and_held_on_leaving_it() -> None:
    conn, cmds = run(ready(), BrokerCode(at_ns=0, code=2103), BrokerCode(at_ns=0, code=2104))
    assert orders_allowed(conn) and "HoldOrders" not in kinds(cmds)
    conn, cmds = decide(conn, BrokerCode(at_ns=0, code=1100))
    assert not orders_allowed(conn) and HoldOrders(reason="API link lost") in cmds


# ---------------------------------------------------------------- backoff


def test_jitter_unit_is_deterministic_and_in_unit_interval() -> None:
    values = [jitter_unit(3, k) for k in range(200)]
    assert values == [jitter_unit(3, k) for k in range(200)]
    assert all(0 <= u < 1 for u in values) and len(set(values)) == 200
    assert values[:5] != [jitter_unit(4, k) for k in range(5)]


def test_backoff_sequence_is_exact_for_a_seed() -> None:
    cfg = replace(CFG, reconnect_initial_ns=S, reconnect_max_ns=60 * S, jitter=0.2)
    delays = [backoff_ns(cfg, k, jitter_unit(11, k)) for k in range(9)]
    assert delays == EXPECTED_SEED_11


# Seed 11, initial 1 s, max 60 s, jitter 0.2: bases 1, 2, 4, 8, 16, 32, 60, 60, 60 s.
EXPECTED_SEED_11 = [915_386_677, 2_330_216_265, 4_694_659_146, 8_956_023_502, 13_009_715_028,
                    35_796_917_226, 51_207_733_012, 52_980_962_474, 67_331_586_876]


def test_backoff_without_jitter_doubles_then_caps_at_max() -> None:
    cfg = replace(CFG, reconnect_initial_ns=S, reconnect_max_ns=60 * S, jitter=0.0)
    assert [backoff_ns(cfg, k, 0.7) // S for k in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff_ns(cfg, 10_000, 0.5) == 60 * S


@pytest.mark.parametrize(("u", "factor"), [(0.0, 0.8), (0.5, 1.0), (0.75, 1.1)])
def test_backoff_jitter_spans_plus_minus_jitter(u: float, factor: float) -> None:
    cfg = replace(CFG, reconnect_initial_ns=10 * S, reconnect_max_ns=60 * S, jitter=0.2)
    assert backoff_ns(cfg, 0, u) == round(10 * S * factor)


@given(attempt=st.integers(0, 200), u=st.floats(0, 1, exclude_max=True),
       jitter=st.floats(0, 1), initial=st.integers(1, 10 * S), extra=st.integers(0, 100 * S))
def test_backoff_stays_within_jitter_of_the_capped_base(attempt: int, u: float, jitter: float,
                                                         initial: int, extra: int) -> None:
    cfg = replace(CFG, reconnect_initial_ns=initial, reconnect_max_ns=initial + extra, jitter=jitter)
    base = min(initial + extra, initial * 2**attempt)
    delay = backoff_ns(cfg, attempt, u)
    assert base * (1 - jitter) - 1 <= delay <= base * (1 + jitter) + 1
    assert delay <= cfg.reconnect_max_ns * (1 + jitter) + 1


def test_failed_reconnects_schedule_growing_jittered_delays_from_the_seed() -> None:
    conn, t, schedules = connecting(seed=0), 0, []
    conn = replace(conn, seed=11)
    for _ in range(8):
        conn, cmds = decide(conn, SocketFailed(at_ns=t, reason="refused"))
        (sched,) = [c for c in cmds if isinstance(c, ScheduleReconnect)]
        schedules.append(sched)
        # Nothing happens before the reconnect is due: no spinning.
        assert decide(conn, Tick(now_ns=sched.at_ns - 1))[1] == ()
        t = sched.at_ns
        conn, cmds = decide(conn, Tick(now_ns=t))
        assert kinds(cmds) == ["OpenSocket", "PublishState"]
    assert [s.attempt for s in schedules] == list(range(8))
    assert [s.delay_ns for s in schedules] == EXPECTED_SEED_11[:8]


def test_attempt_counter_resets_once_ready() -> None:
    conn = waiting()
    at = conn.reconnect_at_ns or 0
    conn = run(conn, Tick(now_ns=at), SocketFailed(at_ns=at, reason="x"))[0]
    assert conn.attempt == 2
    at = conn.reconnect_at_ns or 0
    conn = run(conn, Tick(now_ns=at), NextValidId(at_ns=at, order_id=1),
               *(SyncStepDone(at_ns=at, step=s) for s in FULL_SYNC))[0]
    assert conn.state is ConnState.READY and conn.attempt == 0
    conn, cmds = decide(conn, SocketClosed(at_ns=at, reason="eof"))
    (sched,) = [c for c in cmds if isinstance(c, ScheduleReconnect)]
    assert sched.attempt == 0


# ---------------------------------------------------------------- heartbeat


def test_heartbeat_is_sent_every_interval_while_answered() -> None:
    conn, sent_at = ready(0), []
    for t in range(0, 60 * S + 1, S):
        conn, cmds = decide(conn, Tick(now_ns=t))
        if SendHeartbeat() in cmds:
            sent_at.append(t)
            conn = run(conn, HeartbeatSent(at_ns=t), HeartbeatAnswered(at_ns=t + S // 100))[0]
    assert sent_at == [10 * S, 20 * S, 30 * S, 40 * S, 50 * S, 60 * S]
    assert conn.state is ConnState.READY and conn.last_heartbeat_ns == 60 * S + S // 100


def test_heartbeat_timeout_closes_the_socket_and_schedules_a_reconnect() -> None:
    conn = ready(0)
    conn, cmds = decide(conn, Tick(now_ns=10 * S))
    assert cmds == (SendHeartbeat(),)
    conn, _ = decide(conn, HeartbeatSent(at_ns=10 * S + 5))
    assert next_wakeup_ns(conn) == 40 * S + 5
    assert decide(conn, Tick(now_ns=40 * S + 4))[1] == ()
    conn, cmds = decide(conn, Tick(now_ns=40 * S + 5))
    assert kinds(cmds) == ["CloseSocket", "Alert", "HoldOrders", "PublishState", "ScheduleReconnect"]
    assert cmds[1].level is AlertLevel.ERROR  # type: ignore[union-attr]
    assert conn.state is ConnState.DISCONNECTED
    # The timer keeps running while disconnected and drives the reconnect.
    conn, cmds = decide(conn, Tick(now_ns=conn.reconnect_at_ns))  # type: ignore[arg-type]
    assert kinds(cmds) == ["OpenSocket", "PublishState"] and conn.state is ConnState.CONNECTING


def test_heartbeat_runs_while_degraded_and_detects_a_dead_socket() -> None:
    conn = degraded(0)
    conn, cmds = decide(conn, Tick(now_ns=10 * S))
    assert cmds == (SendHeartbeat(),)
    conn, cmds = decide(conn, Tick(now_ns=40 * S))
    assert conn.state is ConnState.DISCONNECTED and "ScheduleReconnect" in kinds(cmds)


def test_no_second_heartbeat_while_one_is_unanswered() -> None:
    conn = run(ready(0), Tick(now_ns=10 * S))[0]
    conn, cmds = decide(conn, Tick(now_ns=25 * S))
    assert cmds == ()


def test_connect_timeout_closes_and_reschedules() -> None:
    conn = connecting(0)
    assert next_wakeup_ns(conn) == CFG.connect_timeout_ns
    conn, cmds = decide(conn, Tick(now_ns=CFG.connect_timeout_ns))
    assert kinds(cmds) == ["CloseSocket", "PublishState", "ScheduleReconnect"]


# ---------------------------------------------------------------- 1100 / 1101 / 1102


def test_link_lost_then_data_lost_restore_resubscribes_and_resyncs_to_ready() -> None:
    conn = ready(0)
    conn, cmds = decide(conn, BrokerCode(at_ns=S, code=1100, text="Connectivity lost"))
    assert conn.state is ConnState.DEGRADED and HoldOrders(reason="API link lost") in cmds
    # Repeated 1100s change nothing but the streak counter.
    conn, cmds = run(conn, BrokerCode(at_ns=2 * S, code=1100), BrokerCode(at_ns=3 * S, code=1100))
    assert cmds == [] and error_count(conn, 1100) == 3
    conn, cmds = decide(conn, BrokerCode(at_ns=4 * S, code=1101))
    assert conn.state is ConnState.SYNCHRONIZING and cmds[-1] == RequestSync(step=SyncStep.ORDER_IDS)
    assert error_count(conn, 1100) == 0
    # reqIds(-1) answers with nextValidId, which completes the id step.
    conn, cmds = decide(conn, NextValidId(at_ns=4 * S, order_id=1))
    assert cmds == (RequestSync(step=SyncStep.OPEN_ORDERS),)
    conn, cmds = run(conn, *(SyncStepDone(at_ns=5 * S, step=s) for s in FULL_SYNC))
    assert ResubscribeMarketData() in cmds
    assert conn.state is ConnState.READY and isinstance(cmds[-1], ReleaseOrders)


def test_link_restored_with_data_kept_reconciles_without_resubscribing() -> None:
    conn = run(ready(0), BrokerCode(at_ns=S, code=1100), BrokerCode(at_ns=2 * S, code=1102),
               NextValidId(at_ns=2 * S, order_id=1))[0]
    assert conn.sync_steps == FULL_SYNC[:-1]
    conn, cmds = run(conn, *(SyncStepDone(at_ns=3 * S, step=s) for s in FULL_SYNC[:-1]))
    assert ResubscribeMarketData() not in cmds and conn.state is ConnState.READY


def test_data_kept_restore_after_an_interrupted_fresh_sync_still_resubscribes() -> None:
    # 1100 arrived before the first sync re-subscribed market data on the new socket.
    conn = run(synchronizing(0), BrokerCode(at_ns=S, code=1100), BrokerCode(at_ns=2 * S, code=1102))[0]
    assert conn.sync_steps[-1] is SyncStep.MARKET_DATA


def test_link_lost_while_connecting_lands_in_degraded() -> None:
    conn = run(connecting(0), BrokerCode(at_ns=0, code=1100), NextValidId(at_ns=0, order_id=1))[0]
    assert conn.state is ConnState.DEGRADED
    conn = run(conn, BrokerCode(at_ns=S, code=1102), NextValidId(at_ns=S, order_id=1))[0]
    assert conn.sync_steps[-1] is SyncStep.MARKET_DATA  # a new socket always re-subscribes


def test_repeated_link_lost_alerts_at_doubling_counts() -> None:
    conn, alerts = degraded(0), []
    for n in range(2, 42):
        conn, cmds = decide(conn, BrokerCode(at_ns=n, code=1100))
        alerts += [(n, c.level) for c in cmds if isinstance(c, Alert)]
    assert alerts == [(5, AlertLevel.ERROR), (10, AlertLevel.ERROR), (20, AlertLevel.ERROR),
                      (40, AlertLevel.ERROR)]


def test_quiet_codes_never_alert_however_often_they_repeat() -> None:
    conn = run(ready(0), BrokerCode(at_ns=0, code=2108))[0]
    conn, cmds = run(conn, *(BrokerCode(at_ns=0, code=c) for _ in range(50) for c in (2109, 2108, 2104)))
    assert not [c for c in cmds if isinstance(c, Alert)] and error_count(conn, 2109) == 50
    assert error_count(conn, 2108) == 0  # the farm's OK ends its streak


# ---------------------------------------------------------------- 326, 1300, pacing, entitlement


def test_client_id_in_use_alerts_and_backs_off_with_growing_delays() -> None:
    conn, delays = connecting(0), []
    for _ in range(6):
        conn, cmds = decide(conn, BrokerCode(at_ns=conn.connect_deadline_ns or 0, code=326))
        (alert,) = [c for c in cmds if isinstance(c, Alert)]
        assert alert.level is AlertLevel.ERROR and "client id 7" in alert.text
        # TWS closes the socket after 326: that must not schedule a second reconnect.
        conn, again = decide(conn, SocketClosed(at_ns=0, reason="closed by TWS"))
        assert again == ()
        (sched,) = [c for c in cmds if isinstance(c, ScheduleReconnect)]
        delays.append(sched.delay_ns)
        conn = run(conn, Tick(now_ns=sched.at_ns))[0]
    cfg = replace(CFG, jitter=0.0)
    bases = [backoff_ns(cfg, k, 0.5) for k in range(6)]
    assert all(b * 0.8 <= d <= b * 1.2 for b, d in zip(bases, delays))
    assert bases == sorted(bases) and bases[-1] == 32 * S


def test_pacing_violation_halves_the_rate_until_the_next_ready() -> None:
    conn = ready(0)
    conn, cmds = decide(conn, BrokerCode(at_ns=0, code=100))
    assert ThrottleOutbound(rate_per_s=22) in cmds
    conn, cmds = decide(conn, BrokerCode(at_ns=0, code=100))
    assert ThrottleOutbound(rate_per_s=11) in cmds and conn.state is ConnState.READY
    conn, cmds = run(conn, BrokerCode(at_ns=0, code=1102), NextValidId(at_ns=0, order_id=1),
                     *(SyncStepDone(at_ns=0, step=s) for s in FULL_SYNC[:-1]))
    assert ThrottleOutbound(rate_per_s=45) in cmds and conn.pacing_msgs_per_s == 45


def test_pacing_rate_never_drops_below_one() -> None:
    conn, _ = run(ready(0), *(BrokerCode(at_ns=0, code=100) for _ in range(10)))
    assert conn.pacing_msgs_per_s == 1


def test_entitlement_error_alerts_once_per_streak() -> None:
    conn, cmds = run(ready(0), *(BrokerCode(at_ns=0, code=354, req_id=i) for i in range(3)))
    assert kinds(cmds) == ["Alert"]


def test_data_farm_flap_toggles_data_health_and_nothing_else() -> None:
    conn, cmds = run(ready(0), BrokerCode(at_ns=0, code=2103, text="usfarm"),
                     BrokerCode(at_ns=0, code=2105), BrokerCode(at_ns=0, code=2104),
                     BrokerCode(at_ns=0, code=2106))
    assert [c.degraded_farms for c in cmds if isinstance(c, PublishDataHealth)] == [
        frozenset({"market"}), frozenset({"market", "historical"}), frozenset({"historical"}),
        frozenset()]
    assert all(isinstance(c, PublishDataHealth) for c in cmds) and conn.state is ConnState.READY


# ---------------------------------------------------------------- sync deadlines


def test_sync_step_timeout_retries_then_reconnects() -> None:
    conn = synchronizing(0, sync_step_retries=2, sync_step_timeout_ns=3 * S)
    t = 3 * S
    conn, cmds = decide(conn, Tick(now_ns=t))
    assert kinds(cmds) == ["Alert", "RequestSync"] and cmds[1] == RequestSync(step=SyncStep.OPEN_ORDERS)
    conn, cmds = decide(conn, Tick(now_ns=2 * t))
    assert kinds(cmds) == ["Alert", "RequestSync"]
    conn, cmds = decide(conn, Tick(now_ns=3 * t))
    assert kinds(cmds) == ["CloseSocket", "Alert", "PublishState", "ScheduleReconnect"]
    assert conn.state is ConnState.DISCONNECTED


def test_step_answer_after_a_retry_moves_on() -> None:
    conn = run(synchronizing(0), Tick(now_ns=CFG.sync_step_timeout_ns))[0]
    conn, cmds = decide(conn, SyncStepDone(at_ns=0, step=SyncStep.OPEN_ORDERS))
    assert cmds == (RequestSync(step=SyncStep.COMPLETED_ORDERS),) and conn.step_retries == 0


# ---------------------------------------------------------------- outage ladder


def test_outage_ladder_alerts_then_halts_and_reports_the_recovery() -> None:
    conn = ready(0, outage_alert_ns=180 * S, outage_halt_ns=900 * S)
    conn = run(conn, SocketClosed(at_ns=100 * S, reason="eof"))[0]
    seen: list[tuple[int, str]] = []
    t = 100 * S
    while t <= 1100 * S:
        conn, cmds = decide(conn, Tick(now_ns=t))
        seen += [(t, f"{c.level.value}") for c in cmds if isinstance(c, Alert)]
        seen += [(t, "HALT") for c in cmds if isinstance(c, HaltTrading)]
        if conn.state is ConnState.CONNECTING:  # TWS is still down
            conn = run(conn, SocketFailed(at_ns=t, reason="refused"))[0]
        t += S
    assert seen == [(280 * S, "ERROR"), (1000 * S, "CRITICAL"), (1000 * S, "HALT")]
    at = conn.reconnect_at_ns
    conn, cmds = run(conn, Tick(now_ns=at), NextValidId(at_ns=at, order_id=1),  # type: ignore[arg-type]
                     *(SyncStepDone(at_ns=at, step=s) for s in FULL_SYNC))  # type: ignore[arg-type]
    assert conn.state is ConnState.READY and conn.escalation == 0
    assert [c.level for c in cmds if isinstance(c, Alert)] == [AlertLevel.INFO]


def test_outage_ladder_is_silent_after_a_requested_disconnect() -> None:
    conn = run(ready(0), DisconnectRequested(at_ns=S, reason="shutdown"))[0]
    assert next_wakeup_ns(conn) is None
    assert decide(conn, Tick(now_ns=10**13))[1] == ()


def test_next_wakeup_covers_each_timer() -> None:
    assert next_wakeup_ns(connecting(0)) == CFG.connect_timeout_ns
    assert next_wakeup_ns(synchronizing(0)) == CFG.heartbeat_interval_ns
    assert next_wakeup_ns(synchronizing(0, sync_step_timeout_ns=5 * S)) == 5 * S
    w = waiting(0)
    assert next_wakeup_ns(w) == w.reconnect_at_ns
    assert next_wakeup_ns(replace(ready(0), heartbeat_due_ns=10**15)) == 10**15


# ---------------------------------------------------------------- order ids


def test_next_order_id_hands_out_consecutive_ids_from_the_floor() -> None:
    conn = fresh()
    conn, a = next_order_id(conn)
    conn, b = next_order_id(conn)
    assert (a, b, conn.next_id) == (HWM + 1, HWM + 2, HWM + 3)


@pytest.mark.parametrize(("event", "expected"), [
    (NextValidId(at_ns=0, order_id=10), 100),       # a rollback (LEAN IB #242) never lowers it
    (NextValidId(at_ns=0, order_id=300), 300),
    (BrokerCode(at_ns=0, code=103, req_id=250), 251),
    (BrokerCode(at_ns=0, code=103, req_id=50), 100),
    (BrokerCode(at_ns=0, code=103, req_id=-1), 100),
    (OrderIdSeen(at_ns=0, order_id=400), 401),
])
def test_order_id_floor_only_goes_up(event: Event, expected: int) -> None:
    assert decide(ready(0), event)[0].next_id == expected


_id_events = st.one_of(
    st.builds(lambda i: NextValidId(at_ns=0, order_id=i), st.integers(0, 400)),
    st.builds(lambda i: BrokerCode(at_ns=0, code=103, req_id=i), st.integers(-1, 400)),
    st.builds(lambda i: OrderIdSeen(at_ns=0, order_id=i), st.integers(0, 400)),
    st.just("alloc"),
)


@settings(max_examples=150)
@given(hwm=st.integers(0, 300), start=st.sampled_from(sorted(BUILDERS)),
       ops=st.lists(_id_events, max_size=60))
def test_allocated_ids_strictly_increase_and_never_fall_below_hwm_plus_one(
        hwm: int, start: str, ops: list[object]) -> None:
    conn = replace(BUILDERS[start](), next_id=hwm + 1)
    ids: list[int] = []
    for op in ops:
        if op == "alloc":
            conn, i = next_order_id(conn)
            ids.append(i)
        else:
            floor = conn.next_id
            conn = decide(conn, op)[0]  # type: ignore[arg-type]
            assert conn.next_id >= floor
            if isinstance(op, BrokerCode) and op.req_id >= 0:
                assert conn.next_id > op.req_id  # 103: the duplicate id is never handed out again
    assert ids == sorted(set(ids)) and all(i >= hwm + 1 for i in ids)


# ---------------------------------------------------------------- random event sequences

_events = st.one_of(
    st.builds(ConnectRequested, at_ns=st.just(0)),
    st.builds(DisconnectRequested, at_ns=st.just(0)),
    st.builds(SocketConnected, at_ns=st.just(0), server_version=st.sampled_from([100, 176, 226])),
    st.builds(SocketFailed, at_ns=st.just(0), reason=st.just("x")),
    st.builds(SocketClosed, at_ns=st.just(0), reason=st.just("x")),
    st.builds(NextValidId, at_ns=st.just(0), order_id=st.integers(0, 50)),
    st.builds(SyncStepDone, at_ns=st.just(0), step=st.sampled_from(list(SyncStep))),
    st.builds(BrokerCode, at_ns=st.just(0),
              code=st.sampled_from(sorted(set().union(*CODE_CLASSES.values())) + [1, 9999]),
              req_id=st.integers(-1, 50)),
    st.builds(HeartbeatSent, at_ns=st.just(0)),
    st.builds(HeartbeatAnswered, at_ns=st.just(0)),
    st.builds(Tick, now_ns=st.just(0)),
    st.just("step"),    # the shell answers the current sync step
    st.just("wake"),    # a Tick at next_wakeup_ns
)


@settings(max_examples=150)
@given(start=st.sampled_from(sorted(BUILDERS)),
       steps=st.lists(st.tuples(st.integers(0, 40 * S), _events), max_size=80))
def test_random_event_sequences_keep_the_invariants(start: str, steps: list[tuple[int, Event]]) -> None:
    conn, now = BUILDERS[start](), 0
    for dt, ev in steps:
        now += dt
        if ev == "step":
            ev = SyncStepDone(at_ns=now, step=conn.sync_steps[0]) if conn.sync_steps else Tick(now_ns=now)
        elif ev == "wake":
            now = max(now, next_wakeup_ns(conn) or now)
            ev = Tick(now_ns=now)
        ev = replace(ev, now_ns=now) if isinstance(ev, Tick) \
            else replace(ev, at_ns=now)  # type: ignore[call-arg]
        before = conn
        conn, cmds = decide(conn, ev)
        names = kinds(cmds)
        # Orders are released exactly when READY is entered, held exactly when it is left.
        assert ("ReleaseOrders" in names) == (conn.state is ConnState.READY
                                              and before.state is not ConnState.READY)
        assert ("HoldOrders" in names) == (before.state is ConnState.READY
                                           and conn.state is not ConnState.READY)
        published = [c for c in cmds if isinstance(c, PublishState)]
        if conn.state is not before.state:
            assert published[-1].state is conn.state
        assert conn.next_id >= before.next_id
        # A wanted, disconnected connection always has its next attempt scheduled.
        if conn.state is ConnState.DISCONNECTED and conn.wanted:
            assert conn.reconnect_at_ns is not None
        if conn.state is ConnState.SYNCHRONIZING:
            assert conn.sync_steps and conn.step_deadline_ns is not None
        else:
            assert conn.sync_steps == ()
        if conn.state is ConnState.CONNECTING:
            assert conn.connect_deadline_ns is not None
        if conn.wanted:
            assert next_wakeup_ns(conn) is not None
        if any(isinstance(c, OpenSocket) for c in cmds):
            assert conn.state is ConnState.CONNECTING
        assert sum(isinstance(c, CloseSocket) for c in cmds) <= 1
        assert 1 <= conn.pacing_msgs_per_s <= 50
