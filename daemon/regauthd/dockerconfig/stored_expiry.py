"""The expiry of every credential one Docker config stores, asking its helpers as a client would.

Inline credentials are read from the file (:func:`regauthd.dockerconfig.expiry.read_expiry`);
a key served by a ``docker-credential-<name>`` helper (``credHelpers``, ``credsStore``) is asked
with ``get`` through :func:`regauthd.dockerconfig.stores.store_for`, the same call the probes
make. Blocking when a helper runs. Every secret read is handed to the process-wide redactor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regauthd.dockerconfig.auth import credential_from_entry, helper_name_for
from regauthd.dockerconfig.expiry import (
    NO_EXPIRY,
    CredentialExpiry,
    credential_expiry,
    read_expiry,
)
from regauthd.dockerconfig.stores import CredentialError, store_for
from regauthd.redactor import REDACTOR


def stored_expiries(
    config: Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> list[CredentialExpiry]:
    """One :class:`CredentialExpiry` per ``auths``/``credHelpers`` key that holds a credential.

    A helper that fails gives an item with ``error`` set (its message, redacted), and is not
    asked again for the other keys (a locked keychain would time out once per key); a key that
    holds nothing (a placeholder whose helper has no secret) gives none.
    """
    data = dict(config)
    auths = data.get("auths")
    auths = auths if isinstance(auths, dict) else {}
    helpers = data.get("credHelpers")
    keys = list(auths)
    if isinstance(helpers, dict):
        keys += [k for k in helpers if k not in auths]
    out: list[CredentialExpiry] = []
    failed: dict[str, str] = {}  # helper -> the key it failed for: not asked again
    for key in keys:
        if not isinstance(key, str):
            continue
        helper = helper_name_for(data, key)
        if helper is None:
            entry = auths.get(key)
            if not isinstance(entry, dict):
                continue
            credential = credential_from_entry(entry)
            if credential is not None:
                out.append(CredentialExpiry(key, credential.username, read_expiry(entry)))
            continue
        if helper in failed:
            why = f"not asked: `docker-credential-{helper}` already failed for {failed[helper]}"
            out.append(CredentialExpiry(key, "?", NO_EXPIRY, helper, why))
            continue
        try:
            found = store_for(data, key, env=env).get(key)
        except CredentialError as exc:
            # A locked keychain times out per call: one failure stands for the helper.
            failed[helper] = key
            out.append(CredentialExpiry(key, "?", NO_EXPIRY, helper, str(exc)))
            continue
        if found is not None:
            REDACTOR.remember([found.secret])
            out.append(CredentialExpiry(key, found.username, credential_expiry(found), helper))
    return out


__all__ = ["stored_expiries"]
