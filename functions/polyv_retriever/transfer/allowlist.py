"""Which download URLs the transfer may fetch: everything else is refused before a connection is made.

``POLYV_DOWNLOAD_ALLOW`` is a comma-separated list. An entry is either a host pattern (``*.videocc.net``,
``dl.example.com``), which admits HTTPS on the default port only, or a full HTTPS origin
(``https://dl.example.com:8443``), admitted exactly. Entries that would open the function to everything
(``*``, ``*.net``) or to the machine's own network (loopback, private, link-local and metadata addresses,
``localhost``, ``*.internal``), and plain-HTTP origins, are refused; the one exception is an explicit
``http://127.0.0.1:PORT`` origin, which is how the local stack and tests allow their loopback servers.

A URL is read once, here, by a deliberately strict parser (:func:`parse_download_url`), and the transfer
connects to exactly the scheme, host and port it returns (``urllib3``'s ``connection_from_host``): no other
parser ever reads the URL's authority. Anything two parsers could read differently is refused rather than
interpreted: backslashes, userinfo (``@``), whitespace and control or non-ASCII characters, ``%`` in the
host, a ``?`` or ``#`` before the path, fragments, empty or non-decimal ports, numeric hosts other than a
dotted quad in canonical form (``127.1``, ``0x7f.0.0.1``, ``2130706433``, ``0177.0.0.1``), IPv6 literals
and trailing dots.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from polyv_retriever.errors import DownloadNotAllowed, InvalidInput

#: Polyv's download CDN hosts (video-dl-2.videocc.net in Polyv's own example).
DEFAULT_ALLOW = "*.videocc.net,*.polyv.net"

#: Multi-label public suffixes, where anyone can register a name: ``*.co.uk`` or ``*.github.io`` would admit
#: the whole world like ``*.net``. A small built-in list of the common ones (country second levels and the
#: big hosting platforms), not the full Public Suffix List: an entry outside it is taken as a domain.
PUBLIC_SUFFIXES = frozenset(
    f"{second}.{country}"
    for country in ("cn", "hk", "tw", "sg", "au", "nz", "br", "mx", "ar", "tr", "my", "ph", "vn", "pk")
    for second in ("com", "net", "org", "edu", "gov")
) | frozenset(
    f"{second}.{country}"
    for country in ("uk", "jp", "kr", "nz", "za", "in", "id", "il", "th")
    for second in ("co", "ac", "or", "ne", "go", "org", "gov")
) | frozenset(
    {
        # Hosting and cloud platforms whose customers get names under these.
        "github.io", "gitlab.io", "herokuapp.com", "appspot.com", "blogspot.com", "netlify.app",
        "vercel.app", "pages.dev", "workers.dev", "web.app", "firebaseapp.com", "azurewebsites.net",
        "cloudfront.net", "amazonaws.com", "s3.amazonaws.com", "aliyuncs.com", "myqcloud.com",
        "qcloud.la", "bcebos.com", "myhuaweicloud.com", "ngrok.io", "ngrok-free.app", "trycloudflare.com",
    }
)  # fmt: skip

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
#: Names that reach the machine or its cloud's internal services, whatever DNS says elsewhere.
_INTERNAL_NAMES = ("localhost", "localhost.localdomain", "instance-data", "metadata")
_INTERNAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".localdomain",
    ".home.arpa",  # RFC 8375: home networks
    ".svc",  # Kubernetes service names (name.namespace.svc[.cluster.local])
    ".cluster.local",
)


@dataclass(frozen=True)
class DownloadTarget:
    """A download URL as the transfer reads it: connect to ``scheme://host:port``, send ``target``."""

    scheme: str
    host: str  # lower case; a DNS name or a dotted-quad IPv4 address
    port: int
    target: str  # the request target: the path and the query, as given (the query is the credential)

    @property
    def origin(self) -> str:
        """What may be logged or shown: never the path's query."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def redacted(self) -> str:
        """The URL without its query string: safe for logs and errors."""
        return self.origin + self.path


def _refuse(reason: str) -> DownloadNotAllowed:
    return DownloadNotAllowed(f"download URL refused: {reason}")


def _host(authority_host: str) -> str:
    """A DNS name of letters, digits and hyphens, or a canonical dotted quad; anything else is refused."""
    if not authority_host:
        raise _refuse("no host")
    if authority_host.endswith("."):
        raise _refuse(f"the host {authority_host!r} ends in a dot")
    host = authority_host.lower()
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # WHATWG and some resolvers read a numeric last label as an IPv4 address in any of several forms;
        # only the one form every parser agrees on is taken.
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise _refuse(f"the host {authority_host!r} is a non-canonical IPv4 address") from None
        if str(address) != host:
            raise _refuse(f"the host {authority_host!r} is a non-canonical IPv4 address")
        return host
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _refuse(f"the host {authority_host!r} is not a plain DNS name")
    return host


def parse_download_url(url: str) -> DownloadTarget:
    """Read ``url`` strictly (see the module's docstring); raise :class:`DownloadNotAllowed` naming the
    problem, never the query string."""
    if not isinstance(url, str):
        raise _refuse("not a string")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise DownloadNotAllowed(f"not an http(s) URL: {scheme[:10] if sep else '?'}://")
    # Checked over the whole URL: a character that one parser drops or treats as a delimiter and another
    # does not is how the host gets read two ways.
    for char in url:
        if not "\x21" <= char <= "\x7e":
            raise _refuse(f"character {char!r} (whitespace, control or non-ASCII) in the URL")
    if "\\" in url:
        raise _refuse("backslash in the URL")
    if "#" in url:
        raise _refuse("fragment ('#') in the URL")
    slash = rest.find("/")
    authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    for char, what in (("@", "userinfo ('@')"), ("?", "'?'"), ("%", "percent-encoding")):
        if char in authority:
            raise _refuse(f"{what} in the URL's host part")
    if "[" in authority or "]" in authority:
        raise _refuse("IPv6 literal hosts are not accepted")
    host_part, colon, port_text = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if colon:
        if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
            raise _refuse(f"invalid port {port_text[:8]!r}")
        port = int(port_text)
    else:
        port = _DEFAULT_PORTS[scheme]
    return DownloadTarget(scheme, _host(host_part), port, target)


_RELAY_ANYCAST = ipaddress.IPv4Network("192.88.99.0/24")  # RFC 7526: deprecated 6to4 relays


def _is_internal(host: str) -> bool:
    """Loopback, private, link-local (the metadata service), reserved, multicast and relay addresses, and
    internal names. (``is_global`` alone calls multicast and the old 6to4 relay anycast global.)"""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return host in _INTERNAL_NAMES or f".{host}".endswith(_INTERNAL_SUFFIXES)  # the suffix itself too
    return not address.is_global or address.is_multicast or address in _RELAY_ANYCAST


class DownloadAllowList:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._patterns: list[str] = []  # exact names, or "*." + a domain of at least two labels
        self._origins: set[tuple[str, str, int]] = set()
        for raw in (e.strip() for e in spec.split(",")):
            if raw:
                self._add(raw)
        if not self._patterns and not self._origins:
            raise InvalidInput("POLYV_DOWNLOAD_ALLOW is empty: nothing could be downloaded")

    def _add(self, raw: str) -> None:
        def bad(reason: str) -> InvalidInput:
            return InvalidInput(f"POLYV_DOWNLOAD_ALLOW entry {raw!r}: {reason}")

        if "://" in raw:
            try:
                origin = parse_download_url(raw)
            except DownloadNotAllowed as exc:
                raise bad(f"not an origin ({exc})") from None
            if origin.target != "/" or raw.endswith("/"):
                raise bad("an origin is scheme://host:port, without a path")
            loopback = origin.scheme == "http" and origin.host == "127.0.0.1" and raw.count(":") == 2
            if _is_internal(origin.host) and not loopback:
                raise bad(
                    "names a loopback, private, link-local or metadata address; only an explicit "
                    "http://127.0.0.1:PORT origin (the local stack's) is accepted"
                )
            if origin.scheme == "http" and not loopback:
                raise bad("plain HTTP is accepted only for an explicit http://127.0.0.1:PORT origin")
            self._origins.add((origin.scheme, origin.host, origin.port))
            return
        wildcard = raw.startswith("*.")
        name = raw[2:] if wildcard else raw
        if "*" in name or (wildcard and name.count(".") < 1):
            raise bad("a wildcard is allowed only as '*.' before a domain of at least two labels")
        try:
            host = _host(name)
        except DownloadNotAllowed as exc:
            raise bad(f"use a host pattern or a full origin ({exc})") from None
        if _is_internal(host):
            raise bad("names a loopback, private, link-local or metadata address or an internal name")
        if wildcard and _is_ip(host):
            raise bad("a wildcard goes before a domain name, not an address")
        if wildcard and host in PUBLIC_SUFFIXES:
            raise bad(f"a wildcard over the public suffix {host!r} would admit anyone's names under it")
        self._patterns.append(("*." if wildcard else "") + host)

    @classmethod
    def from_env(cls) -> DownloadAllowList:
        return cls(os.environ.get("POLYV_DOWNLOAD_ALLOW") or DEFAULT_ALLOW)

    def check(self, url: str) -> DownloadTarget:
        """The target to connect to, exactly, if ``url`` may be fetched; else :class:`DownloadNotAllowed`.
        The message never has the query string: for a signed URL that is the credential."""
        target = parse_download_url(url)
        if (target.scheme, target.host, target.port) in self._origins:
            return target
        if (
            target.scheme == "https"
            and target.port == 443
            and any(_matches(pattern, target.host) for pattern in self._patterns)
        ):
            return target
        never = _is_internal(target.host)  # no entry could admit it: do not suggest adding one
        raise DownloadNotAllowed(
            f"download from {target.origin} is not allowed (POLYV_DOWNLOAD_ALLOW={self.spec})",
            hint="an internal or special address is never a Polyv download host" if never else None,
        )


def _matches(pattern: str, host: str) -> bool:
    """``*.example.com`` admits any name under example.com (not example.com itself, never an address)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and not _is_ip(host)
    return host == pattern


def _is_ip(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True
