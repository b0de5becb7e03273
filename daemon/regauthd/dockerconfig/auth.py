# STAND-IN: replaced at merge by the probe/config helper's module
"""Credential codec (stand-in: re-exports :mod:`regauthd.dockerconfig.stores` until the merge)."""

from regauthd.dockerconfig.stores import Credential, credential_from_entry, helper_name_for

__all__ = ["Credential", "credential_from_entry", "helper_name_for"]
