"""A pull-secret document as given on the command line, and the same document written back.

Pure (text in, text out). Three forms are read: a raw ``.dockerconfigjson`` (JSON), a Secret
manifest (YAML or JSON, the payload base64 under ``data`` or plain under ``stringData``), and
``kubectl get secret NAME -o json`` output (a Secret in JSON). :func:`render` writes a
document back in the form it came in: a Secret stays a Secret (base64 under ``data`` when it
was there), JSON stays JSON, YAML stays YAML. Parse errors carry positions, never text, since
the text holds secrets.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

import yaml

DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
DOCKERCFG_KEY = ".dockercfg"
DOCKERCONFIGJSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCFG_TYPE = "kubernetes.io/dockercfg"
TYPE_FOR_KEY = {DOCKERCONFIGJSON_KEY: DOCKERCONFIGJSON_TYPE, DOCKERCFG_KEY: DOCKERCFG_TYPE}
KEY_FOR_TYPE = {v: k for k, v in TYPE_FOR_KEY.items()}

MAX_DOCUMENT_BYTES = 1 << 20


class DocumentError(Exception):
    """The input is no pull-secret document at all. The message says why, without its text."""


@dataclass(frozen=True, slots=True)
class SecretDocument:
    """What was given, and where in it the payload (the Docker config the kubelet reads) sits."""

    form: Literal["raw", "secret"]
    syntax: Literal["json", "yaml"]
    manifest: dict[str, Any] | None
    """The Secret object (None for a raw payload)."""
    field: Literal["data", "stringData"] | None
    """Where the payload is in the Secret (None: raw, or no payload found)."""
    data_key: str | None
    """The key under ``field`` that holds the payload (``.dockerconfigjson`` when raw)."""
    payload: str | None
    """The payload as the kubelet reads it (after the API server's base64 decoding of ``data``);
    None when ``data`` is not base64."""
    original: bytes
    """The input, byte for byte."""

    @property
    def secret_type(self) -> str | None:
        if self.manifest is None:
            return DOCKERCONFIGJSON_TYPE
        value = self.manifest.get("type")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        meta = self.manifest.get("metadata") if self.manifest else None
        value = meta.get("name") if isinstance(meta, dict) else None
        return value if isinstance(value, str) else None


def read(data: bytes) -> SecretDocument:
    """Parse any of the three forms. Raises :class:`DocumentError`."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"larger than {MAX_DOCUMENT_BYTES} bytes; no pull secret is")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError("not UTF-8 text") from None
    if not text.strip():
        raise DocumentError("empty")
    syntax: Literal["json", "yaml"] = "json"
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as json_error:
        syntax = "yaml"
        docs = _yaml_documents(text, json_error)
        if len(docs) != 1:
            raise DocumentError(
                f"holds {len(docs)} YAML documents; pass exactly one Secret (or its "
                ".dockerconfigjson)"
            ) from None
        value = docs[0]
    if not isinstance(value, dict):
        raise DocumentError("the top level is not an object (a Secret or a Docker config)")
    kind = value.get("kind")
    if kind == "List" or (kind is not None and kind != "Secret"):
        raise DocumentError(
            f"is a {kind!s}, not a Secret; pass one Secret (`kubectl get secret NAME -o json`)"
        )
    if kind == "Secret" or ("apiVersion" in value and ("data" in value or "stringData" in value)):
        return _read_secret(value, syntax, data)
    if syntax == "yaml":
        raise DocumentError(
            "is YAML but not a Secret; a .dockerconfigjson is JSON (the kubelet parses it as JSON)"
        )
    return SecretDocument("raw", "json", None, None, DOCKERCONFIGJSON_KEY, text, data)


def _yaml_documents(text: str, json_error: json.JSONDecodeError) -> list[Any]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1} column {mark.column + 1})" if mark else ""
        raise DocumentError(
            f"neither JSON (line {json_error.lineno} column {json_error.colno}: "
            f"{json_error.msg}) nor YAML{where}"
        ) from None


def _read_secret(
    manifest: dict[str, Any], syntax: Literal["json", "yaml"], original: bytes
) -> SecretDocument:
    wanted = KEY_FOR_TYPE.get(manifest.get("type") or "", DOCKERCONFIGJSON_KEY)
    # The API server merges stringData over data, so a key in stringData wins.
    for field in ("stringData", "data"):
        section = manifest.get(field)
        if not isinstance(section, dict):
            continue
        for key in (wanted, DOCKERCONFIGJSON_KEY, DOCKERCFG_KEY):
            value = section.get(key)
            if isinstance(value, str):
                payload = value if field == "stringData" else decode_base64(value)
                return SecretDocument("secret", syntax, manifest, field, key, payload, original)
    return SecretDocument("secret", syntax, manifest, None, None, None, original)


def decode_base64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def with_payload(
    doc: SecretDocument,
    payload: str,
    *,
    data_key: str | None = None,
    secret_type: str | None = None,
) -> SecretDocument:
    """The same document holding ``payload`` (under ``data_key``, with ``secret_type``)."""
    if doc.manifest is None:
        return replace(doc, payload=payload)
    manifest = json.loads(json.dumps(doc.manifest))
    field = doc.field or "data"
    key = data_key or doc.data_key or DOCKERCONFIGJSON_KEY
    section = manifest.get(field)
    if not isinstance(section, dict):
        section = {}
    if doc.data_key is not None and doc.data_key != key:
        section.pop(doc.data_key, None)
    section[key] = payload if field == "stringData" else _encode(payload)
    manifest[field] = section
    if secret_type is not None:
        manifest["type"] = secret_type
    return replace(doc, manifest=manifest, field=field, data_key=key, payload=payload)


def _encode(payload: str) -> str:
    return base64.b64encode(payload.encode("utf-8")).decode("ascii")


def render(doc: SecretDocument) -> bytes:
    """The document as text, in the form it was read."""
    if doc.manifest is None:
        return (doc.payload or "").encode("utf-8")
    if doc.syntax == "json":
        return (json.dumps(doc.manifest, indent=4, ensure_ascii=False) + "\n").encode("utf-8")
    text = yaml.safe_dump(doc.manifest, sort_keys=False, default_flow_style=False)
    return text.encode("utf-8")


def payload_text(config: dict[str, Any]) -> str:
    """A payload as the fix writes it: compact JSON."""
    return json.dumps(config, ensure_ascii=False, separators=(",", ":"))
