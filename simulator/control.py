"""The simulator's control port: one JSON object per line in, one JSON reply per line out (loopback only).

Commands (field "cmd"):
    status                                  the broker's state (orders, fills, positions, account)
    drop [client_id]                        close a client's socket (every client without an id)
    refuse seconds                          a TWS restart: drop everyone, refuse connections
    lose_link                               error 1100 to every client; data and order events pause
    restore_link [data_kept]                1102 if data_kept else 1101 (subscriptions dropped)
    duplicate_statuses count                the next `count` orderStatus messages are sent twice
    fill_after_cancel [count]               the next cancel is acknowledged, then the order fills
    commission_lag seconds                  live commission reports follow their fill this late (0: at once)
    reject_next [reason]                    the next new order is rejected with 201
    silence symbol [on]                     stop (on=false: resume) one symbol's market data silently
    squeeze msgs_per_s seconds              pacing pressure: each client may send msgs_per_s a second for a while
    freeze [on]                             stop (on=false: restart) market time: no quotes, no market fills
    order_log [last]                        the newest `last` (default 100) new orders with the state they met
A bad line gets {"ok": false, "error": "..."} and the connection stays open.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from simulator.server import Simulator

COMMANDS = ("status", "drop", "refuse", "lose_link", "restore_link", "duplicate_statuses",
            "fill_after_cancel", "commission_lag", "reject_next", "silence", "squeeze", "freeze", "order_log")
MAX_LINE = 64 * 1024


def execute(sim: "Simulator", request: Any) -> dict[str, Any]:
    """Run one control request against `sim` (on its loop thread) and return the reply."""
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {"ok": False, "error": 'expected a JSON object with a string "cmd", e.g. {"cmd": "status"}'}
    cmd = request["cmd"]
    try:
        if cmd == "status":
            return {"ok": True, "status": sim.snapshot()}
        if cmd == "drop":
            return {"ok": True, "dropped": sim.drop(_int(request, "client_id", None))}
        if cmd == "refuse":
            sim.refuse(_num(request, "seconds"))
        elif cmd == "lose_link":
            sim.lose_link()
        elif cmd == "restore_link":
            sim.restore_link(bool(request.get("data_kept", False)))
        elif cmd == "duplicate_statuses":
            sim.duplicate_statuses = _int(request, "count")
        elif cmd == "fill_after_cancel":
            sim.fill_after_cancel = _int(request, "count", 1)
        elif cmd == "commission_lag":
            sim.commission_lag_s = _num(request, "seconds")
        elif cmd == "reject_next":
            sim.set_reject_next(str(request.get("reason") or "rejected by fault injection"))
        elif cmd == "silence":
            sim.set_silenced(str(request.get("symbol", "")), bool(request.get("on", True)))
        elif cmd == "squeeze":
            sim.squeeze_pacing(_int(request, "msgs_per_s"), _num(request, "seconds"))
        elif cmd == "freeze":
            sim.freeze(bool(request.get("on", True)))
        elif cmd == "order_log":
            last = _int(request, "last", 100)
            records = list(sim.order_log)[-last:] if last else []
            return {"ok": True, "orders": [dataclasses.asdict(r) for r in records]}
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}; known: {', '.join(COMMANDS)}"}
    except (KeyError, ValueError, TypeError) as exc:
        return {"ok": False, "error": f"{cmd}: {exc}"}
    sim.flush()
    return {"ok": True}


def _int(request: dict[str, Any], key: str, default: Any = ...) -> Any:
    value = request.get(key, default)
    if value is ...:
        raise KeyError(f"missing {key!r}")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0, got {value!r}")
    return value


def _num(request: dict[str, Any], key: str) -> float:
    value = request.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ValueError(f"{key} must be a number of seconds in [0, 3600], got {value!r}")
    return float(value)


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """Return the next line (b"" at EOF), or None for a line over MAX_LINE, which is skipped whole."""
    import asyncio  # here, not at the top: bootstrap.py reads COMMANDS for every command's --help

    too_long = False
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # EOF: a last line without its newline, or nothing
            return None if too_long else exc.partial
        except asyncio.LimitOverrunError as exc:
            # Skip the oversized line piece by piece through its newline instead of buffering it.
            await reader.readexactly(exc.consumed)
            too_long = True
            continue
        return None if too_long else line


async def serve_control(sim: "Simulator", host: str, port: int) -> asyncio.base_events.Server:
    """Start the control listener on (host, port)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (line := await _read_line(reader)) != b"":
                if line is None:
                    reply: dict[str, Any] = {"ok": False, "error": f"line too long (max {MAX_LINE} bytes)"}
                else:
                    try:
                        reply = execute(sim, json.loads(line))
                    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                        reply = {"ok": False, "error": f"not JSON: {exc}"}
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    import asyncio

    return await asyncio.start_server(handle, host, port, limit=MAX_LINE)


def send(port: int, request: dict[str, Any], host: str = "127.0.0.1", timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to a running simulator's control port and return its reply."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
