"""Credentials that carry their expiry, made the way their issuers make them.

- :func:`ecr_password`: what ``aws ecr get-login-password`` prints (and ``GetAuthorizationToken``
  returns as ``user:password`` after base64): Go's ``json.Marshal`` of ``{"payload", "datakey",
  "version", "type", "expiration"}`` (compact, in that order; ``payload`` and ``datakey`` base64
  of encrypted bytes, ``expiration`` epoch seconds, 12 h after issue), then standard base64 with
  padding. A real one decodes to ``{"payload":"r9D8+...","datakey":"AQEBAHij...","version":"2",
  "type":"DATA_KEY","expiration":1757147299}``.
- :func:`jwt_token`: a JWT signed with pyjwt (HS256 by default), as Azure ACR refresh tokens and
  Docker's OAuth access tokens are JWTs with ``exp``.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from typing import Any

import jwt


def ecr_password(expires_at: datetime, *, payload_bytes: int = 1200) -> str:
    document = {
        "payload": base64.b64encode(os.urandom(payload_bytes)).decode(),
        "datakey": base64.b64encode(b"\x01\x01\x01\x00x" + os.urandom(180)).decode(),
        "version": "2",
        "type": "DATA_KEY",
        "expiration": int(expires_at.timestamp()),
    }
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def jwt_token(expires_at: datetime | None, **claims: Any) -> str:
    body: dict[str, Any] = {"sub": "ci-bot", "iss": "test-issuer", **claims}
    if expires_at is not None:
        body["exp"] = int(expires_at.timestamp())
    return jwt.encode(body, os.urandom(32).hex(), algorithm="HS256")
