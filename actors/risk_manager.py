"""RiskManager: the hard pre-trade gate every order intent passes, and the account's trading state.

Every OrderIntent (from a symbol actor, an operator's flatten, or a test) comes here. The intent
is checked by `core.risk.decide` against the `[risk]` limits and the account as the bus reports
it (positions and marks from PositionChanged, working groups until OrderGroupFinished). The bus
lags the broker, so an exit, and a denial that the position decides, is decided on the journal's
count instead when it differs: the position the symbol committed before sending the intent plus
the fills the connection journaled since that the symbol has not applied yet. Approved:
the legs go straight to the connection (SubmitOrder, unowned, when the group starts by submitting
them all) and the group to the groups supervisor with the approval's id; OrderApproved is
published. Denied: nothing reaches the broker; OrderDenied (naming the limit and by how much) is
published and sent to the symbol's actor. The intent, the decision and the account are committed
to the journal before anything is sent; an intent id decided before is ignored (never sent twice).

The kill switch: Halt (HALTED, or REDUCE_ONLY), Resume and Flatten arrive from the Supervisor.
A mode change is published as TradingStateChanged and sent to the symbols supervisor, which
passes it to every symbol (HALTED: they cancel their working entries; protective orders stay).
The daily loss (realized + unrealized − commissions since the exchange day began) moves the
account to REDUCE_ONLY at `reduce_only_at_pct` of `daily_loss_limit` and to HALTED at the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest, ThespianWatch, WatchMessage

from actors import direct_channel as dc
from actors import journaling
from actors.base import ShellActor, run_once
from actors.order_group import GroupRecord, build_group, group_key, is_protective
from actors.symbol import state_key as symbol_state_key
from core import order_group as og
from core import risk as core_risk
from core.config import Config, RiskConfig
from core.errors import InvalidOrder
from core.position import Position, with_unapplied_fills
from journal.store import IntentRow, Journal, JournalError
from messages import (
    AdminError,
    CancelOrderGroup,
    AdminErrorCode,
    AdminReply,
    ConfigureActor,
    DirectChannel,
    Flatten,
    Halt,
    Message,
    OrderApproved,
    OrderDenied,
    OrderGroupFinished,
    OrderIntent,
    PeerMoved,
    PlaceOrderGroup,
    PositionChanged,
    Resume,
    Snapshot,
    SubmitOrder,
    SubmitOrders,
    Subscribe,
    ToSymbol,
    TradingStateChanged,
)
from messages.risk import TradingState

TWS: Final = "tws"
GROUPS: Final = "groups"
SYMBOLS: Final = "symbols"
_S: Final = 1_000_000_000
STATE_KEY: Final = "risk"  # the account's key in the journal's actor states
_STRICTNESS: Final = {core_risk.Mode.ACTIVE: 0, core_risk.Mode.REDUCE_ONLY: 1, core_risk.Mode.HALTED: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskState:
    """The RiskManager's snapshot: the account as the gate sees it."""

    account: core_risk.Account


def durable_part(account: core_risk.Account) -> tuple[object, ...]:
    """Return what a restart must keep: all but the marks and P&L that the next PositionChanged brings."""
    return (account.mode, account.mode_reason, account.halted_by_loss, account.day, account.day_start_pnl,
            account.working, account.sent, tuple((h.symbol, h.quantity) for h in account.holdings))


def proposal_of(intent: OrderIntent) -> core_risk.Proposal:
    """Return the intent as the risk core checks it (the entry leg; a bracket's children protect it)."""
    return core_risk.Proposal(
        intent_id=intent.intent_id, symbol=intent.symbol, side=intent.side, quantity=intent.quantity,
        order_type=intent.order_type, limit_price=intent.limit_price, stop_price=intent.stop_price,
        market_price=intent.market_price, legs=max(len(intent.legs), 1), reduce_only=intent.reduce_only,
        operator=intent.operator)


def exchange_day(now_ns: int, zone: ZoneInfo) -> str:
    """Return the exchange-local date of `now_ns` as "YYYY-MM-DD"."""
    return datetime.fromtimestamp(now_ns / _S, tz=timezone.utc).astimezone(zone).date().isoformat()


class RiskManager(ShellActor):
    """The "risk" core child: ConfigureActor(config=Config, state=RiskState or None)."""

    ON_ORDER_PATH = True  # its process asks for a short time slice (ShellActor.ON_ORDER_PATH)

    def __init__(self) -> None:
        super().__init__()
        self.limits = RiskConfig()
        self.zone = ZoneInfo("America/New_York")
        self.account = core_risk.Account()
        self.journal: Journal | None = None
        self._saved: tuple[object, ...] | None = None      # durable part of the last Snapshot
        self._journaled: tuple[object, ...] | None = None  # durable part last written to the journal
        self._journaled_mode: tuple[object, ...] | None = None  # its trading mode (mode, reason, by loss)
        self.to_tws = dc.Link("SubmitOrders")        # the connection's datagram inbox, once offered
        self.direct = dc.Receiver([OrderIntent])      # symbols' intents, as datagrams (multiproc only)

    def receiveMessage(self, msg: Any, sender: ActorAddress) -> Any:
        super().receiveMessage(msg, sender)
        # The watch must come back from every call, or thespian stops watching the inbox.
        fd = self.direct.fileno()
        return ThespianWatch([fd]) if fd is not None and not self.failed else None

    # ------------------------------------------------------------ set-up

    def on_configure(self, msg: ConfigureActor) -> None:
        config = msg.config
        if not isinstance(config, Config):
            raise TypeError(f"RiskManager needs a core.config.Config, not {type(config).__name__}")
        self.limits = config.risk
        self.zone = config.system.zone
        self.journal = journaling.journal(journaling.JournalSettings.of(config))
        state = msg.state
        if self.journal is not None:
            # Written before the supervisor's copy is sent: never older than it, and after a restart of
            # the whole system the only one.
            state = self.journal.get_state(STATE_KEY) or state
        if isinstance(state, RiskState):
            self.account = state.account
            self._saved = self._journaled = durable_part(self.account)
        self.log.info("risk: {} (max order {} / {}, position {}, gross {}, net {}, open orders {}, "
                      "{} orders/min, daily loss {}), {} working group(s)", self.account.mode.value,
                      self.limits.max_order_quantity, self.limits.max_order_notional,
                      self.limits.max_position_per_symbol, self.limits.max_gross_exposure,
                      self.limits.max_net_exposure, self.limits.max_open_orders,
                      self.limits.max_orders_per_minute, self.limits.daily_loss_limit,
                      len(self.account.working))
        bus = self.peers.get("bus")
        if bus is not None:
            for name in ("PositionChanged", "OrderGroupFinished", "TradingStateChanged"):
                self.tell(bus, self.make(Subscribe, msg, type_name=name, reply_to=self.myAddress))
        self.direct.open(self)
        # The symbols supervisor passes the offer to every symbol actor, new ones included.
        self.direct.offer(self, self.peers.get(SYMBOLS), msg)
        if self.account.mode is not core_risk.Mode.ACTIVE:
            # A restarted gate repeats its mode, so symbols started meanwhile know it too.
            self._tell_symbols(self._state_change(msg, self.account.mode, self.account.mode,
                                                  self.account.mode_reason))
        if self.incarnation > 1:
            self._place_working_groups()

    def _place_working_groups(self) -> None:
        """Tell the groups supervisor again to place every working group (a restarted gate).

        An approval is journaled before its legs and its PlaceOrderGroup leave; a kill between the
        two sends leaves legs at the connection that no group claims. The groups supervisor
        ignores a group it knows (running or finished), so the repeat never places anything twice.
        """
        if self.journal is None:
            return
        for working in self.account.working:
            record = self.journal.get_state(group_key(working.intent_id))
            if isinstance(record, GroupRecord):
                self.tell_peer(GROUPS, record.place)

    @run_once
    def receiveMsg_PeerMoved(self, msg: PeerMoved, sender: ActorAddress) -> None:
        super().receiveMsg_PeerMoved(msg, sender)
        if msg.name == SYMBOLS:
            self.direct.offer(self, msg.address, msg)  # a restarted symbols supervisor knows no channel
        if msg.name == SYMBOLS and self.account.mode is not core_risk.Mode.ACTIVE:
            # A restarted symbols supervisor has forgotten the mode: its symbols must not run rules.
            self._tell_symbols(self._state_change(msg, self.account.mode, self.account.mode,
                                                  self.account.mode_reason))

    @run_once
    def receiveMsg_WatchMessage(self, msg: WatchMessage, sender: ActorAddress) -> None:
        self.direct.take(self, msg.ready)

    def receiveMsg_ActorExitRequest(self, msg: ActorExitRequest, sender: ActorAddress) -> None:
        self.direct.close()

    def receiveMsg_DirectChannel(self, msg: DirectChannel, sender: ActorAddress) -> None:
        # The latest offer wins (a restarted connection offers a new one, maybe before its
        # PeerMoved arrives); it is used only while its sender is the connection we know.
        if self.to_tws.offer(msg, sender):
            self.log.info("risk: approved orders go to the connection by its direct channel")

    def _to_tws(self, submit: SubmitOrders) -> None:
        """Hand approved legs to the connection: by its datagram inbox when it offered one, else by thespian."""
        had = self.to_tws.channel is not None
        if self.to_tws.send(submit, self.myAddress, to=self.peers.get(TWS)):
            return
        if had and self.to_tws.channel is None:
            self.log.info("risk: the connection's direct channel is gone; messages until it offers a new one")
        self.tell_peer(TWS, submit)

    def status_detail(self) -> str:
        a, counters = self.account, self.metrics.counters
        denied = sum(n for name, n in counters.items() if name.startswith("intents_denied_"))
        return (f"trading {a.mode.value}{f' ({a.mode_reason})' if a.mode_reason else ''}; "
                f"day P&L {core_risk.day_pnl(a)}; {len(a.working)} working group(s); "
                f"approved {counters.get('intents_approved', 0)}, denied {denied}")

    # ------------------------------------------------------------ the gate

    @run_once
    def receiveMsg_OrderIntent(self, msg: OrderIntent, sender: ActorAddress) -> None:
        now = self.now_ns()
        before = core_risk.new_day(self.account, exchange_day(now, self.zone))
        proposal = proposal_of(msg)
        account, verdict = core_risk.decide(self.limits, before, proposal, now)
        if msg.reduce_only or (not verdict.approved and verdict.limit in core_risk.POSITION_LIMITS):
            account, verdict = self._decide_on_journaled_position(msg, before, proposal, (account, verdict), now)
        place: PlaceOrderGroup | None = None
        submits: list[SubmitOrder] = []
        approved: OrderApproved | None = None
        if verdict.approved:
            approved = self.make(OrderApproved, msg, intent=msg)
            try:
                place, submits = self._placement(msg, approved)
            except InvalidOrder as exc:
                verdict = core_risk.Verdict(approved=False, limit=core_risk.Limit.INVALID, detail=str(exc))
                account = core_risk.new_day(self.account, exchange_day(now, self.zone))
        if not self._journal_intent(msg, verdict, account, now, place if verdict.approved else None):
            self.log.warning("risk: intent {} was decided before (a repeat): ignored", msg.intent_id)
            return
        if not verdict.approved:
            self._commit(msg, account)
            limit = verdict.limit.value if verdict.limit is not None else "unknown"
            self.metrics.inc(f"intents_denied_{limit}")
            self.log.warning("risk: DENIED {} {} {} {} {} (rule {}, signal {}): {}: {}", msg.intent_id,
                             msg.symbol, msg.side.value, msg.quantity, msg.order_type.value, msg.rule or "-",
                             msg.signal_id or "-", limit, verdict.detail)
            denied = self.make(OrderDenied, msg, intent=msg, limit=limit, detail=verdict.detail)
            self.publish(denied)
            self._to_symbol(msg.symbol, denied)
            return
        assert place is not None and approved is not None
        # With a journal (the decision and the account committed above), the legs go first; the
        # supervisor's copy, the log line and the bus follow, off the way to the broker. Without
        # one, the supervisor's copy is all a restart has: it goes first.
        if self.journal is None:
            self._commit(msg, account)
        self.account = account
        if submits:
            # One message for every leg: one transmit to the busy connection, not one per leg.
            self._to_tws(self.make(SubmitOrders, msg, orders=tuple(submits)))
        self.tell_peer(GROUPS, place)
        if self.journal is not None:
            self._commit(msg, account)
        self.metrics.inc("intents_approved")
        self.log.info("risk: approved {} {} {} {} {}{}", msg.intent_id, msg.symbol, msg.side.value,
                      msg.quantity, msg.order_type.value, " (reducing)" if verdict.reducing else "")
        self.publish(approved)  # after the orders: the bus is for listeners, not on the way

    def _journal_intent(self, intent: OrderIntent, verdict: core_risk.Verdict, account: core_risk.Account,
                        now: int, place: PlaceOrderGroup | None) -> bool:
        """Commit the intent, the decision, the account and an approved group's first record before
        anything acts on them; False if the intent was decided before (a repeat).

        Not synced to disk: an approval reaches the broker only through the connection, which
        commits synced before the order leaves (and so puts this commit on disk too); a denial
        reaches no one outside the machine.
        """
        journal = self.journal
        if journal is None:
            return True
        row = IntentRow(
            intent_id=intent.intent_id, ts_ns=intent.ts_ns or now, symbol=intent.symbol, side=intent.side,
            quantity=intent.quantity, order_type=intent.order_type, limit_price=intent.limit_price,
            stop_price=intent.stop_price, tif=intent.tif, stop_loss=intent.stop_loss,
            take_profit=intent.take_profit, kind=intent.kind.value, legs=len(intent.legs), rule=intent.rule,
            rules_version=intent.rules_version, signal_id=intent.signal_id, reduce_only=intent.reduce_only,
            operator=intent.operator, market_price=intent.market_price, msg_id=intent.msg_id,
            corr_id=intent.correlation_id, decision="APPROVED" if verdict.approved else "DENIED",
            limit_name=verdict.limit.value if verdict.limit is not None else "", detail=verdict.detail,
            decided_ns=now)
        with journal.batch(synced=False):
            if not journal.record_intent(row):
                return False
            if place is not None:
                # The group exists from its approval on: a restart of the whole system finds it even
                # if its actor never started (its legs may have reached the connection already).
                journal.put_state(group_key(place.group_id),
                                  GroupRecord(place=place, group=place.started if isinstance(
                                      place.started, og.OrderGroup) else None), ts_ns=now)
            self._save(account)
        return True

    def _decide_on_journaled_position(
            self, msg: OrderIntent, before: core_risk.Account, proposal: core_risk.Proposal,
            decided: tuple[core_risk.Account, core_risk.Verdict], now: int) -> tuple[core_risk.Account, core_risk.Verdict]:
        """Decide again on the journal's count of the position when the bus's count differs.

        The gate counts positions from PositionChanged on the bus, which lags the broker. Seen in
        chaos runs: a close asked for right after its entry filled was denied as "would not reduce
        the position 0" (its stop already cancelled, the position stayed open), and a close was
        approved although the target it had cancelled had filled after all (the broker filled it
        after acknowledging the cancel) and the close then went short. The journal has the position
        the symbol committed before sending the intent and every fill the connection committed
        since, before passing it on: for an exit (every time) and for a denial that the position
        decides, its count is the one used.
        """
        journaled = self._journaled_position(msg.symbol)
        counted = core_risk.position_of(before, msg.symbol)
        if journaled is None or journaled == counted:
            return decided
        self.log.info("risk: {} holds {} as the journal counts it, {} as the bus has told so far: {} decided "
                      "on the journal's count", msg.symbol, journaled, counted, msg.intent_id)
        return core_risk.decide(self.limits, core_risk.with_position(before, msg.symbol, journaled), proposal, now)

    def _journaled_position(self, symbol: str) -> Decimal | None:
        """Return `symbol`'s position as the journal counts it (None: no journal or no state).

        That is the position its actor journaled last, with the fills journaled since that it has
        not applied yet.
        """
        if self.journal is None:
            return None
        try:
            state = self.journal.get_state(symbol_state_key(symbol))
            position = getattr(state, "position", None)
            if not isinstance(position, Position):
                return None
            fills = self.journal.executions(symbol=symbol, after_seq=position.exec_floor)
        except JournalError as exc:
            self.log.warning("risk: the journaled position of {} cannot be read: {}", symbol, exc)
            return None
        return with_unapplied_fills(position, ((f.exec_id, f.seq, f.quantity * f.side.sign) for f in fills))

    def _placement(self, intent: OrderIntent, approved: OrderApproved) -> tuple[PlaceOrderGroup, list[SubmitOrder]]:
        """Return the group to place and, when it starts by submitting every leg, those submits.

        The legs then reach the connection one hop after this decision instead of three (groups
        supervisor, a new group actor, the connection); the group actor starts from the
        submitted state and claims them, as a restarted group does.
        """
        place = self.make(PlaceOrderGroup, intent, group_id=intent.intent_id, kind=intent.kind,
                          symbol=intent.symbol, legs=intent.legs, intent_id=intent.intent_id,
                          reply_to=intent.reply_to, approval=approved.msg_id)
        group = build_group(place)  # InvalidOrder: the legs do not make the group they claim to
        started, commands = og.decide(group, og.Start())
        submits = [c for c in commands if isinstance(c, og.SubmitOrder)]
        if len(submits) != len(commands):  # not a plain start: the group actor does all of it
            return place, []
        return replace(place, started=started), [
            self.make(SubmitOrder, intent, order=c.order, group_id=group.id, transmit=c.transmit,
                      protective=is_protective(c.order), unowned=True, trigger=intent.trigger,
                      trigger_ts_ns=intent.trigger_ts_ns)
            for c in submits]

    # ------------------------------------------------------------ the account

    @run_once
    def receiveMsg_PositionChanged(self, msg: PositionChanged, sender: ActorAddress) -> None:
        holding = core_risk.Holding(symbol=msg.symbol, quantity=msg.quantity, mark=msg.last_price,
                                    net_pnl=msg.realized_pnl + msg.unrealized_pnl - msg.commissions)
        account = core_risk.new_day(self.account, exchange_day(self.now_ns(), self.zone))
        account = core_risk.position_changed(account, holding)
        self._assess(msg, account)

    @run_once
    def receiveMsg_OrderGroupFinished(self, msg: OrderGroupFinished, sender: ActorAddress) -> None:
        self._commit(msg, core_risk.group_finished(self.account, msg.group_id))

    @run_once
    def receiveMsg_TradingStateChanged(self, msg: TradingStateChanged, sender: ActorAddress) -> None:
        # Another actor halted trading (the connection on a fatal broker error, the supervisor when
        # a core actor is beyond its restart budget): the gate enforces it. Its own announcements
        # come back from the bus too; they change nothing. Only an operator loosens the mode.
        mode = core_risk.Mode(msg.state.value)
        if _STRICTNESS[mode] <= _STRICTNESS[self.account.mode]:
            return
        before = self.account.mode
        account = core_risk.set_mode(self.account, mode, msg.reason or f"{mode.value} by another actor")
        self._commit(msg, account)
        self.log.critical("risk: trading {} -> {} ({})", before.value, mode.value, account.mode_reason)
        self._tell_symbols(self._state_change(msg, before, mode, account.mode_reason))
        if mode is core_risk.Mode.HALTED:
            self._cancel_entries(msg, account)

    def _assess(self, cause: Message, account: core_risk.Account) -> None:
        before = self.account.mode
        account, reason = core_risk.assess(self.limits, account)
        self._commit(cause, account)
        if reason:
            self.log.critical("risk: {}", reason)
            self._announce(cause, before, account)

    # ------------------------------------------------------------ the kill switch

    @run_once
    def receiveMsg_Halt(self, msg: Halt, sender: ActorAddress) -> None:
        mode = core_risk.Mode.REDUCE_ONLY if msg.reduce_only else core_risk.Mode.HALTED
        reason = f"operator: {msg.reason}" if msg.reason else "operator"
        self._operator_mode(msg, sender, mode, reason)

    @run_once
    def receiveMsg_Resume(self, msg: Resume, sender: ActorAddress) -> None:
        account = core_risk.new_day(self.account, exchange_day(self.now_ns(), self.zone))
        _, loss_reason = core_risk.assess(self.limits, core_risk.set_mode(account, core_risk.Mode.ACTIVE, ""))
        if loss_reason:
            text = (f"not resumed: {loss_reason}; the day's loss still breaks the limit (raise "
                    f"risk.daily_loss_limit, or resume on the next exchange day)")
            self.log.warning("risk: {}", text)
            self.tell(sender, self.make(AdminError, msg, code=AdminErrorCode.REFUSED, text=text,
                                        command="Resume"))
            return
        self._operator_mode(msg, sender, core_risk.Mode.ACTIVE, f"operator: {msg.reason}" if msg.reason
                            else "operator")

    @run_once
    def receiveMsg_Flatten(self, msg: Flatten, sender: ActorAddress) -> None:
        # Flattening everything also halts: the rules must not open again what is being closed.
        if not msg.symbol and self.account.mode is not core_risk.Mode.HALTED:
            before = self.account.mode
            account = core_risk.set_mode(self.account, core_risk.Mode.HALTED,
                                         f"operator flatten{f': {msg.reason}' if msg.reason else ''}")
            self._commit(msg, account)
            self._announce(msg, before, account)
        self.tell_peer(SYMBOLS, msg)
        what = msg.symbol or "every symbol"
        self.log.warning("risk: flatten {} (operator{})", what, f": {msg.reason}" if msg.reason else "")
        self.tell(sender, self.make(AdminReply, msg, text=f"flattening {what}: entries cancelled, positions "
                                    f"closed at market; trading {self.account.mode.value}"))

    def _operator_mode(self, msg: Message, asker: ActorAddress, mode: core_risk.Mode, reason: str) -> None:
        before = self.account.mode
        account = core_risk.set_mode(self.account, mode, reason)
        self._commit(msg, account)
        if before is not mode:
            self.log.warning("risk: trading {} -> {} ({})", before.value, mode.value, reason)
            self._announce(msg, before, account)
        what = {core_risk.Mode.HALTED: "no new orders; working entries are cancelled, protective orders stay",
                core_risk.Mode.REDUCE_ONLY: "only orders that reduce a position",
                core_risk.Mode.ACTIVE: "trading resumed"}[mode]
        self.tell(asker, self.make(AdminReply, msg, text=f"trading {mode.value} (was {before.value}): {what}"))

    def _announce(self, cause: Message, before: core_risk.Mode, account: core_risk.Account) -> None:
        change = self._state_change(cause, before, account.mode, account.mode_reason)
        self.publish(change)
        self._tell_symbols(change)
        if account.mode is core_risk.Mode.HALTED:
            self._cancel_entries(cause, account)

    def _cancel_entries(self, cause: Message, account: core_risk.Account) -> None:
        """Cancel what still works of every entry the gate let through (a bracket keeps its children).

        The symbols cancel their own entries too; the gate does it as well, so a halt also reaches
        the groups of a symbol that is quarantined or restarting. Cancels are idempotent.
        """
        groups = self.peers.get(GROUPS)
        entries = [w for w in account.working if w.pending != 0]
        if groups is None or not entries:
            return
        self.log.warning("risk: HALTED: cancelling the working entries of {}",
                         ", ".join(w.intent_id for w in entries))
        for working in entries:
            self.tell(groups, self.make(CancelOrderGroup, cause, group_id=working.intent_id,
                                        reason=f"halt: {account.mode_reason}", entry_only=True))

    def _state_change(self, cause: Message, before: core_risk.Mode, mode: core_risk.Mode,
                      reason: str) -> TradingStateChanged:
        return self.make(TradingStateChanged, cause, state=TradingState(mode.value),
                         previous=TradingState(before.value), reason=reason)

    def _tell_symbols(self, msg: Message) -> None:
        symbols = self.peers.get(SYMBOLS)
        if symbols is not None:
            self.tell(symbols, msg)

    def _to_symbol(self, symbol: str, msg: Message) -> None:
        symbols = self.peers.get(SYMBOLS)
        if symbols is not None:
            self.tell(symbols, self.make(ToSymbol, msg, symbol=symbol, message=msg))

    def _save(self, account: core_risk.Account, durable: tuple[object, ...] | None = None) -> None:
        """Journal the account when its durable part changed since it was last journaled.

        Synced to disk only when the trading mode changed (an operator is told, orders are
        cancelled); holdings and working groups follow fills and groups the journal has synced.
        """
        durable = durable_part(account) if durable is None else durable
        if durable != self._journaled and self.journal is not None:
            mode = (account.mode, account.mode_reason, account.halted_by_loss)
            with self.journal.batch(synced=mode != self._journaled_mode):
                self.journal.put_state(STATE_KEY, RiskState(account=account), incarnation=self.incarnation,
                                       ts_ns=self.now_ns())
            self._journaled, self._journaled_mode = durable, mode

    def _commit(self, cause: Message, account: core_risk.Account) -> None:
        self.account = account
        durable = durable_part(account)
        self._save(account, durable)
        if durable != self._saved:
            self._saved = durable
            self.tell(self.parent, self.make(Snapshot, cause, key=self.key, incarnation=self.incarnation,
                                             state=RiskState(account=account)))
