"""Rules every message on stderr obeys: one line, and no secrets.

Applied where messages are printed (``progress.Reporter`` and the CLI's error handler), so no caller
can forget them: a file name with a newline cannot split an error in two, and ``user:pass@`` in a URL
(``HF_ENDPOINT``, a proxy, a server address) never reaches a terminal or a cron mail.
"""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#@\s]+)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&](?:token|access_token|api_key|apikey|key|signature|sig)=)[^&#\s]+", re.I)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)[A-Za-z0-9._~+/=-]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def redact(text: str) -> str:
    """``text`` with URL credentials, secret query parameters and bearer tokens replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['key']}***", text)
    return _BEARER.sub(lambda m: f"{m['key']}***", text)


def one_line(text: str) -> str:
    """``text`` on one line: newlines and other control characters (tabs excepted) written as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def clean(text: str) -> str:
    """What every stderr message goes through: redacted, then on one line."""
    return one_line(redact(text))
