"""Where a secret lives: in config.json itself or in a ``docker-credential-<name>`` helper.

Mirrors docker/cli ``cli/config/credentials``: one small :class:`CredentialStore` protocol with a
file store and a native (helper) store behind it, and Docker's rule for which store serves a
registry (``credHelpers[key]``, else ``credsStore``, else the file). The credential value and the
``auth`` codec are pure and live in :mod:`regauthd.dockerconfig.auth`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from regauthd.dockerconfig.auth import (
    IDENTITY_TOKEN_USERNAME,
    Credential,
    convert_to_hostname,
    credential_from_entry,
    encode_auth,
    helper_name_for,
)
from regauthd.dockerconfig.credhelper import HelperRunner
from regauthd.dockerconfig.helperprogram import HelperRunError
from regauthd.dockerconfig.keys import HUB_CANONICAL, auths_key_for_registry
from regauthd.redact import redact_text
from regauthd.redactor import REDACTOR

HELPER_TIMEOUT_S = 10.0
_MAX_SAID = 300  # characters of a failing helper's message quoted in the error
_NOT_FOUND = "credentials not found in native keychain"
# docker-credential-pass 0.6.x says this instead when erasing a URL it does not hold.
_NOT_IN_PASS = "is not in the password store"


class CredentialError(Exception):
    """A credential could not be read or written. The message never contains a secret."""


class CredentialHelperError(CredentialError):
    """A ``docker-credential-<name>`` helper failed, is missing, or timed out."""


class CredentialStore(Protocol):
    """Docker's four-method store (``credentials.Store``), minus ``GetAll``."""

    def get(self, server_url: str) -> Credential | None: ...

    def store(self, server_url: str, credential: Credential) -> None: ...

    def erase(self, server_url: str) -> None: ...

    def list(self) -> dict[str, str]: ...


class FileStore:
    """Credentials held inline in a parsed config's ``auths`` (read-only view plus edits)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config

    def _auths(self) -> dict[str, Any]:
        auths = self._config.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise CredentialError("`auths` in config.json is not an object")
        return auths

    def get(self, server_url: str) -> Credential | None:
        entry = self._auths().get(server_url)
        return credential_from_entry(entry) if isinstance(entry, dict) else None

    def store(self, server_url: str, credential: Credential) -> None:
        entry: dict[str, Any] = {}
        if credential.is_identity_token:
            if credential.username != IDENTITY_TOKEN_USERNAME:
                entry["auth"] = encode_auth(credential.username, "")  # as docker login writes
            entry["identitytoken"] = credential.secret
        else:
            entry["auth"] = encode_auth(credential.username, credential.secret)
        self._auths()[server_url] = entry

    def erase(self, server_url: str) -> None:
        self._auths().pop(server_url, None)

    def list(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, entry in self._auths().items():
            cred = credential_from_entry(entry) if isinstance(entry, dict) else None
            if cred is not None:
                result[key] = cred.username
        return result


class HelperStore:
    """A ``docker-credential-<name>`` program, spoken to with the helper protocol.

    The secret only ever travels on the helper's stdin/stdout, never on its command line. A
    failing helper's own words (``pass not initialized``) are quoted in the error, redacted
    (the secret regauthd handed it, and every value that is a secret by its place).

    ``runner`` says as whom, from where and for how long the program runs
    (:mod:`regauthd.dockerconfig.credhelper`: the daemon runs a user's helpers as that user);
    without one it runs as this process with ``env`` and ``timeout``. A name that is not a
    plain helper name (``../x``, ``/bin/sh``) is refused at every call.
    """

    def __init__(
        self,
        name: str,
        *,
        timeout: float = HELPER_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
        runner: HelperRunner | None = None,
    ) -> None:
        self.name = name
        self.program = f"docker-credential-{name}"
        self._runner = runner or HelperRunner(
            env=dict(env) if env is not None else None, timeout=timeout
        )
        self._said = ""
        self._secrets: set[str] = set()  # every secret handed to or read from the helper

    def _run(self, verb: str, stdin: str) -> tuple[int, str]:

        try:
            code, out, err = self._runner.run(self.name, verb, stdin)
        except HelperRunError as exc:
            raise CredentialHelperError(str(exc)) from None
        self._said = " ".join(f"{out.strip()} {err.strip()}".split())
        return code, out

    def _failed(self, what: str, code: int, secret: str | None = None) -> CredentialHelperError:
        """The error for a failed call: the helper's own message, verbatim but redacted."""
        said = self._said
        if len(said) > _MAX_SAID:
            said = said[:_MAX_SAID] + "..."
        if secret:
            self._secrets.add(secret)
        said = REDACTOR.text(redact_text(said, self._secrets or None))
        quoted = f": {said}" if said else ""
        return CredentialHelperError(f"{what} (exit status {code}){quoted}")

    def get(self, server_url: str) -> Credential | None:
        code, out = self._run("get", server_url)
        if code != 0:
            if _NOT_FOUND in out:
                return None
            raise self._failed(f"`{self.program} get` failed for {server_url}", code)
        try:
            data = json.loads(out)
            username, secret = str(data["Username"]), str(data["Secret"])
        except (ValueError, KeyError, TypeError):
            raise CredentialHelperError(
                f"`{self.program} get` answered for {server_url!r} with something that is not "
                "the helper protocol's JSON"
            ) from None
        if not username and not secret:
            return None  # docker-credential-pass 0.6 answers a missing URL with exit 0 and ""
        self._secrets.add(secret)
        return Credential(username, secret)

    def store(self, server_url: str, credential: Credential) -> None:
        """Store, replacing whatever the helper holds for ``server_url``.

        pass keeps one entry per URL *and user* and answers ``get`` with the first user, so a
        different user would not replace the old one: erase first, and put the old one back if
        the store fails.
        """
        try:
            previous = self.get(server_url)
        except CredentialHelperError:
            previous = None  # cannot read it back: a plain store is all that can be done
        if previous is not None and previous.username != credential.username:
            self.erase(server_url)
        try:
            self._store(server_url, credential)
        except CredentialHelperError:
            if previous is not None and previous.username != credential.username:
                self._store(server_url, previous)
            raise

    def _store(self, server_url: str, credential: Credential) -> None:
        payload = json.dumps(
            {"ServerURL": server_url, "Username": credential.username, "Secret": credential.secret}
        )
        code, _ = self._run("store", payload)
        if code != 0:
            raise self._failed(
                f"`{self.program} store` failed for {server_url}", code, credential.secret
            )

    def erase(self, server_url: str) -> None:
        code, out = self._run("erase", server_url)
        if code != 0 and _NOT_FOUND not in out and _NOT_IN_PASS not in out:
            raise self._failed(f"`{self.program} erase` failed for {server_url}", code)

    def list(self) -> dict[str, str]:
        code, out = self._run("list", "")
        if code != 0:
            raise self._failed(f"`{self.program} list` failed", code)
        try:
            data = json.loads(out or "{}")
        except ValueError:
            raise CredentialHelperError(f"`{self.program} list` did not print JSON") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def store_for(
    config: dict[str, Any],
    key: str,
    *,
    env: Mapping[str, str] | None = None,
    runner: HelperRunner | None = None,
) -> CredentialStore:
    """The store Docker reads and writes for ``key`` (exact ``auths``/``credHelpers`` key).

    ``runner``: how a helper is run (as the config's owner, in the daemon); else ``env``."""
    helper = helper_name_for(config, key)
    return HelperStore(helper, env=env, runner=runner) if helper else FileStore(config)


def resolve(
    config: dict[str, Any],
    registry: str,
    *,
    env: Mapping[str, str] | None = None,
    runner: HelperRunner | None = None,
) -> tuple[str, Credential] | None:
    """The credential the Docker CLI would use for ``registry`` (``docker.io``, ``host:port``).

    Returns the key it was found under and the credential, or None. Follows
    ``getAuthConfigKey``: Hub maps to the canonical key; other registries are looked up by exact
    key, then by the file store's legacy hostname loop.
    """
    key = auths_key_for_registry(registry)
    cred = store_for(config, key, env=env, runner=runner).get(key)
    if cred is not None:
        return key, cred
    if key == HUB_CANONICAL or helper_name_for(config, key) is not None:
        return None
    auths = config.get("auths")
    if not isinstance(auths, dict):
        return None
    for other, entry in auths.items():
        if other != key and convert_to_hostname(other) == key and isinstance(entry, dict):
            found = credential_from_entry(entry)
            if found is not None:
                return other, found
    return None
