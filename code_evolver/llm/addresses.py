"""Checking where the LLM servers are, and the API key, when the config is read.

A malformed ``OLLAMA_HOST`` or ``base_url`` used to surface as a ValueError (or httpx's
InvalidURL) from deep inside a client on the first request, and a key with a stray newline as a
misleading "no server answers". Each is a one-line problem here, naming the setting and the fix,
before anything runs.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

OLLAMA_PORT = 11434


def ollama_url(value: str) -> str:
    """``OLLAMA_HOST`` as Ollama reads it (``host``, ``host:port``, ``[::1]:port``, a URL), made
    a full URL; ValueError says what is wrong with it."""
    text = value.strip()
    if not text:
        return f"http://127.0.0.1:{OLLAMA_PORT}"
    if "://" not in text:
        text = f"http://{text}"
    parts = _split(text, value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{value!r} is not an http(s) address")
    port = _port(parts, value)
    default = OLLAMA_PORT if "://" not in value else (443 if parts.scheme == "https" else 80)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"{parts.scheme}://{host}:{port or default}{parts.path.rstrip('/')}"
    return _checked(url, value)


def http_url(value: str) -> str:
    """A base URL such as ``http://127.0.0.1:8000/v1``; ValueError says what is wrong."""
    parts = _split(value.strip(), value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{value!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1"
        )
    _port(parts, value)
    return _checked(value.strip(), value)


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be sent in an HTTP header, if it cannot."""
    if any(char in key for char in "\r\n"):
        return "contains a line break (a newline copied with it?)"
    if not key.isascii():
        return "contains non-ASCII characters"
    if not key.isprintable():
        return "contains control characters"
    return None


def _split(text: str, original: str) -> SplitResult:
    try:
        return urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise ValueError(f"{original!r} is not a valid address ({exc})") from None


def _port(parts: SplitResult, original: str) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{original!r} has a bad port; use a number from 1 to 65535") from None
    if port == 0:
        raise ValueError(f"{original!r} has port 0; use a number from 1 to 65535")
    return port


def _checked(url: str, original: str) -> str:
    """What the HTTP clients would refuse later (httpx's InvalidURL), refused now; checked
    without importing httpx, which would cost every command ~130 ms just to read the config."""
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(f"{original!r} is not a valid address (spaces or control characters)")
    host = urlsplit(url).hostname or ""
    if not host.startswith("[") and ":" not in host:
        try:
            for label in host.split("."):
                if label:
                    label.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"{original!r} is not a valid address ({exc})") from None
        if not _HOST.fullmatch(host.encode("idna").decode("ascii")):
            raise ValueError(f"{original!r} is not a valid address (a bad host name)")
    return url


_HOST = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]*")
"""The characters a URL's host may hold (RFC 3986 reg-name)."""


def verify_tls(url: str) -> bool:
    """Whether an httpx client for ``url`` loads certificates: a plain-HTTP server needs
    none, and not loading them makes creating a client ~25 ms faster (per backend, per
    endpoint); an HTTPS one is verified as usual."""
    return not url.lower().startswith("http://")
