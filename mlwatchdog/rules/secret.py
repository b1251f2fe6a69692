"""Secret-bearing settings: tokens, passwords, URLs with credentials, fallback env values.

A `Secret` holds its value but never shows it: `str`, `repr`, f-strings, JSON dumps of the config
(API answers, bundles, reload errors) all print `***`; a `SecretUrl` prints its URL with the
password and credential-like query parameters as `***`, so a reason still says which host failed.
Code that needs the value asks for it by name: `secret.reveal()`. Python-mode dumps keep the
object itself, so a config handed to a Dask worker still connects.

`secret_values(config)` lists every value a config holds secretly, for the `Redactor` that
scrubs them from anything written or answered (a second line of defence: an exception text can
quote a URL).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

MASK = "***"
# Keys whose values are credentials: in URL queries and in storage_options (s3fs `key`/`secret`,
# adlfs `account_key`/`sas_token`, gcsfs `token`, ...).
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|key|credential|signature|sig|auth|session)", re.IGNORECASE
)
# A value this short would scrub ordinary words out of every log line; such values are still
# masked where they are typed as secrets, only not searched for in free text.
MIN_SCRUB_LENGTH = 4


class Secret:
    """A string that prints as `***`; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError("a secret is a string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def shown(self) -> str:
        """What is printed instead of the value."""
        return MASK

    def __str__(self) -> str:
        return self.shown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown()!r})"

    def __format__(self, spec: str) -> str:
        return format(self.shown(), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return type(self) is type(other) and hmac.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._value,))  # pickled whole: a Dask task needs the value

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize, info_arg=True, when_used="always"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}

    @classmethod
    def _validate(cls, value: Any) -> Secret:
        if isinstance(value, cls):
            return value
        if isinstance(value, Secret):
            return cls(value.reveal())
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return cls(value)


class SecretUrl(Secret):
    """A URL that may carry credentials (`postgresql://user:pw@host/db`, `?token=...`): shown
    with them masked, whole with `reveal()`."""

    __slots__ = ()

    def shown(self) -> str:
        return mask_url(self._value)


def _serialize(value: Secret, info: Any) -> Any:
    # JSON (API answers, bundles, reload messages): masked. Python mode: the object itself, so
    # `Config.model_validate(config.model_dump())` keeps working secrets.
    return value.shown() if info.mode == "json" else value


def mask_url(url: str) -> str:
    """`url` with its password and credential-like query values as `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if sep else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k, safe='')}={MASK if _SECRET_KEY.search(k) else quote(v, safe='')}"
            for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def is_secret_key(key: str) -> bool:
    """Whether a mapping key (storage_options, HTTP headers) names a credential."""
    return bool(_SECRET_KEY.search(key))


def may_hold_secret(path: Sequence[str | int]) -> bool:
    """Whether the rules.yaml value at key `path` may be a credential (never echoed in a
    message): tokens, passwords, URLs, env values of a fallback, headers and storage options."""
    words = {str(p) for p in path if isinstance(p, str)}
    return bool(words & {"url", "env", "headers", "storage_options", "path", "audit_log"}) or any(
        is_secret_key(w) for w in words
    )


def mask_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """storage_options as shown: values of credential-like keys masked, at any depth."""
    return {
        k: MASK
        if is_secret_key(str(k)) and v is not None
        else mask_options(v)
        if isinstance(v, Mapping)
        else v
        for k, v in options.items()
    }


def secret_values(value: Any) -> Iterator[str]:
    """Every secret string held in `value` (a config, a model, a mapping or a list): `Secret`
    values, the credentials inside URLs, and credential-like keys of option mappings."""
    if isinstance(value, SecretUrl):  # its credentials: the rest of a URL says where, not who
        yield from _url_credentials(value.reveal())
    elif isinstance(value, Secret):
        yield value.reveal()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from secret_values(getattr(value, name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str) and is_secret_key(str(key)):
                yield item
            else:
                yield from secret_values(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from secret_values(item)


def _url_credentials(url: str) -> Iterator[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.password:
        yield parts.password
        yield quote(parts.password, safe="")
    for key, item in parse_qsl(parts.query, keep_blank_values=True):
        if _SECRET_KEY.search(key) and item:
            yield item
            yield quote(item, safe="")


class Redactor:
    """Replaces known secret values with `***` in text and in JSON-like data.

    The daemon keeps one, refreshed with each config (and each token file read); logs, the
    audit trail, the journal, state files, bundles, reports and reload errors pass through it.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._config: frozenset[str] = frozenset()
        self._extra: frozenset[str] = frozenset()  # e.g. token files' contents, old ones kept
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        """Scrub these values (a config's: replacing the previous config's) from now on."""
        self._config = frozenset(s for s in secrets if isinstance(s, str))
        self._refresh()

    def add(self, secrets: Iterable[str]) -> None:
        """Scrub these values too, for good (a token file read, a rotated token's old value)."""
        self._extra = self._extra | {s for s in secrets if isinstance(s, str)}
        self._refresh()

    def _refresh(self) -> None:
        found = {s for s in self._config | self._extra if len(s) >= MIN_SCRUB_LENGTH}
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = tuple(sorted(found, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def data(self, value: Any) -> Any:
        """`value` with every string scrubbed (dicts, lists and tuples rebuilt; keys too)."""
        if not self._secrets:
            return value
        return self._data(value)

    def _data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._data(k): self._data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._data(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._data(v) for v in value)
        return value
