"""The one redaction function: secrets out of any text before it is shown or written.

:func:`redact` removes, from any text (a DSN, a broker URL, an exception message, a log line):

* everything between ``://`` and the **last** ``@`` of a URL-like token, even one no URL parser
  accepts (``postgresql://u:pa@ss%ZZ@host/db``); the user name before the first ``:`` stays;
* the value of every ``password=`` / ``sslpassword=`` pair (key=value DSNs, URL query strings);
* every known secret value wherever it appears (the pieces of a DSN's password as written,
  percent-decoded and split at ``@ : / %``, the SASL password, API keys and tokens), because
  libraries echo fragments of a malformed URL (``failed to resolve host 'secret@host'``).

Pure and import-light (only :mod:`re`): the hook path uses it. The environment's secrets are
gathered by :func:`provider_events.settings.known_secrets`, which calls :func:`dsn_secrets`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["MASK", "MIN_SECRET_LENGTH", "dsn_secrets", "redact"]

MASK = "********"
#: Known secret values shorter than this are not searched for in free text (a 3-character
#: password would mask every word holding it); URL and ``password=`` shapes are masked anyway.
MIN_SECRET_LENGTH = 4

# scheme://userinfo@ : userinfo runs to the LAST @ before the token ends (space, quote, bracket).
_URL_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]{0,30}://)(?P<info>[^\s'\"<>`]*)@")
# password= and sslpassword= (the client key's passphrase), as key=value or URL query parameters.
_KV_PASSWORD = re.compile(
    r"(?i)(?P<pre>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,\"']+)"
)
_PIECES = re.compile(r"[@:/%]")


def _mask_userinfo(m: re.Match[str]) -> str:
    info = m["info"]
    user, sep, _ = info.partition(":")
    if sep and user and not re.search(r"[@%\s]", user):
        return f"{m['pre']}{user}:{MASK}@"
    return f"{m['pre']}{MASK}@"


def dsn_secrets(dsn: str) -> set[str]:
    """The secret values a DSN holds, as any library might echo them back."""
    found: set[str] = set()
    for m in _URL_USERINFO.finditer(dsn):
        info = m["info"]
        _, sep, value = info.partition(":")
        if sep and value:  # no ":": only a user name
            found.add(value)
            with contextlib.suppress(UnicodeDecodeError):
                found.add(unquote(value, errors="strict"))
            found.update(_PIECES.split(value))
    for m in _KV_PASSWORD.finditer(dsn):
        value = m["pw"].strip("'\"")
        found.add(value)
        found.update(_PIECES.split(value))
    return {s for s in found if len(s) >= MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, ``password=`` values and each of ``secrets`` masked."""
    if not text:
        return text
    for secret in sorted(
        {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
    ):
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(_mask_userinfo, text)
    if "assword" in text or "ASSWORD" in text:
        text = _KV_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}", text)
    return text
