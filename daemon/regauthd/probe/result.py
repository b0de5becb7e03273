# STAND-IN: replaced at merge by the probe/config helper's module
"""Probe result types (stand-in: re-exports :mod:`regauthd.probe.client` until the merge)."""

from regauthd.probe.client import ProbeResult, ProbeStatus

__all__ = ["ProbeResult", "ProbeStatus"]
