"""Shared test settings: hypothesis is derandomized (seeded) and bounded so the suite stays fast."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=200,
    suppress_health_check=(HealthCheck.too_slow,),
)
settings.load_profile("ci")
