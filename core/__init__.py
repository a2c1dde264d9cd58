"""Pure trading logic: immutable values and functions over them (no thespian, sockets, clocks or sinks)."""
