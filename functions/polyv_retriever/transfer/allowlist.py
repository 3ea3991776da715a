"""Which download URLs the transfer may fetch: everything else is refused before a connection is made.

``POLYV_DOWNLOAD_ALLOW`` is a comma-separated list. An entry is either a host pattern (``*.videocc.net``),
which admits HTTPS on the default port only, or a full origin (``http://127.0.0.1:8090``), admitted exactly;
the latter is how the local stack and tests allow their plain-HTTP loopback servers.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from polyv_retriever.errors import DownloadNotAllowed, InvalidInput

#: Polyv's download CDN hosts (video-dl-2.videocc.net in Polyv's own example).
DEFAULT_ALLOW = "*.videocc.net,*.polyv.net"


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadNotAllowed(f"not an http(s) URL: {parts.scheme or '?'}://{parts.hostname or '?'}")
    if parts.username or parts.password:
        raise DownloadNotAllowed(f"URL with credentials refused: host {parts.hostname}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DownloadNotAllowed(f"URL with an invalid port: host {parts.hostname}") from None
    return _Origin(parts.scheme, parts.hostname.lower().rstrip("."), port)


class DownloadAllowList:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._patterns: list[str] = []
        self._origins: list[_Origin] = []
        for raw in (e.strip() for e in spec.split(",")):
            if not raw:
                continue
            if "://" in raw:
                try:
                    self._origins.append(_origin(raw))
                except DownloadNotAllowed as exc:
                    raise InvalidInput(
                        f"POLYV_DOWNLOAD_ALLOW entry {raw!r} is not an origin: {exc}"
                    ) from None
            elif "/" in raw or ":" in raw:
                raise InvalidInput(f"POLYV_DOWNLOAD_ALLOW entry {raw!r}: use a host pattern or a full origin")
            else:
                self._patterns.append(raw.lower())
        if not self._patterns and not self._origins:
            raise InvalidInput("POLYV_DOWNLOAD_ALLOW is empty: nothing could be downloaded")

    @classmethod
    def from_env(cls) -> DownloadAllowList:
        return cls(os.environ.get("POLYV_DOWNLOAD_ALLOW") or DEFAULT_ALLOW)

    def check(self, url: str) -> None:
        """Raise :class:`DownloadNotAllowed` unless ``url`` may be fetched. The message never has the query
        string: for a signed URL that is the credential."""
        origin = _origin(url)
        if origin in self._origins:
            return
        if (
            origin.scheme == "https"
            and origin.port == 443
            and any(fnmatch.fnmatchcase(origin.host, pattern) for pattern in self._patterns)
        ):
            return
        raise DownloadNotAllowed(
            f"download from {origin.scheme}://{origin.host}:{origin.port} is not allowed "
            f"(POLYV_DOWNLOAD_ALLOW={self.spec})"
        )
