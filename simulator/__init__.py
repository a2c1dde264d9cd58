"""The TWS simulator: a loopback server that speaks the real TWS API wire protocol to the official ibapi client."""
