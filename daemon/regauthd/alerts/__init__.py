"""Alerts: the catalogue of kinds, the alerter with its suppression, metrics, and the output
sinks (journald, JSON lines, console)."""
