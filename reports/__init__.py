"""Performance reports from the journal: round trips, metrics, the equity chart and one HTML page."""
