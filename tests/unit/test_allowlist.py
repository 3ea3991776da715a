"""The download allow-list: host patterns mean HTTPS only; full origins are exact; a URL whose host two
parsers could read differently is refused; entries that open the function to everything or to internal
addresses are refused."""

from urllib.parse import urlsplit

import pytest
import urllib3

from polyv_retriever.errors import DownloadNotAllowed, InvalidInput
from polyv_retriever.transfer.allowlist import DEFAULT_ALLOW, DownloadAllowList, parse_download_url


@pytest.mark.parametrize(
    "url",
    [
        "https://video-dl-2.videocc.net/1b448be323/6/x.mp4?auth_key=1-2-3-4",
        "https://VIDEO-DL-2.videocc.net/x.mp4",
        "HTTPS://dl.polyv.net/x.mp4",
        "https://dl.polyv.net:443/x.mp4",
        "https://a.b.videocc.net/x%20y.mp4?auth_key=a%2Fb&x=@",
    ],
)
def test_polyv_download_hosts_over_https_are_allowed_by_default(url: str) -> None:
    target = DownloadAllowList(DEFAULT_ALLOW).check(url)
    # What is connected to is what both common parsers read from the URL: nothing is left to interpret.
    parsed = urllib3.util.parse_url(url)
    assert (target.scheme, target.host, target.port) == (parsed.scheme, parsed.host, parsed.port or 443)
    split = urlsplit(url)
    assert (target.host, target.port) == (split.hostname, split.port or 443)
    assert target.target == url[url.index("/", len("https://")) :]


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://video-dl-2.videocc.net/x.mp4", "http://video-dl-2.videocc.net:80 is not allowed"),
        ("https://video-dl-2.videocc.net:8443/x.mp4", ":8443 is not allowed"),
        ("https://videocc.net.evil.example/x.mp4", "videocc.net.evil.example:443 is not allowed"),
        ("https://videocc.net/x.mp4", "https://videocc.net:443 is not allowed"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254:443 is not allowed"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("ftp://video-dl-2.videocc.net/x", "not an http(s) URL"),
        ("//video-dl-2.videocc.net/x", "not an http(s) URL"),
    ],
)
def test_anything_else_is_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(DownloadNotAllowed) as caught:
        DownloadAllowList(DEFAULT_ALLOW).check(url)
    assert why in str(caught.value)


#: Each of these passes a naive check of urlsplit's hostname against *.videocc.net (or is read as another
#: host, or another form of an address, by one of urlsplit, urllib3, WHATWG or the resolver).
DIFFERENTIALS = [
    # urllib3 ends the authority at "\": it connected to evil.example while urlsplit saw *.videocc.net.
    ("https://evil.example\\.videocc.net/x.mp4", "backslash"),
    ("https://evil.example\\@x.videocc.net/x.mp4", "backslash"),
    ("https://x.videocc.net\\@evil.example/x.mp4", "backslash"),
    ("https://x.videocc.net/\\\\evil.example/x.mp4", "backslash"),
    # userinfo: which "@" ends it differs between parsers.
    ("https://user:pw@video-dl-2.videocc.net/x.mp4", "userinfo"),
    ("https://evil.example@x.videocc.net/x.mp4", "userinfo"),
    ("https://x.videocc.net@evil.example/x.mp4", "userinfo"),
    ("https://evil.example:443@x.videocc.net/x.mp4", "userinfo"),
    ("https://x@evil.example@x.videocc.net/x.mp4", "userinfo"),
    # whitespace and controls: urlsplit drops tab/CR/LF, WHATWG strips leading C0s, http.client refuses.
    ("https://evil.example\t.videocc.net/x.mp4", "whitespace, control or non-ASCII"),
    ("https://x.videocc.net\n.evil.example/x.mp4", "whitespace, control or non-ASCII"),
    ("https://x.videocc.net\r/x.mp4", "whitespace, control or non-ASCII"),
    ("https://x.videocc.net /x.mp4", "whitespace, control or non-ASCII"),
    (" https://x.videocc.net/x.mp4", "not an http(s) URL"),
    ("https://x.videocc.net\x00.evil.example/x.mp4", "whitespace, control or non-ASCII"),
    ("https://x.videocc.net\x7f/x.mp4", "whitespace, control or non-ASCII"),
    ("https://x.videocc.net/x.mp4 HTTP/1.1\r\nHost: evil.example", "whitespace, control or non-ASCII"),
    # non-ASCII: IDNA mapping differs (fullwidth dot, full-width letters).
    ("https://evil.example\uff0ex.videocc.net/x.mp4", "whitespace, control or non-ASCII"),
    ("https://x.videocc.net\u3002evil.example/x.mp4", "whitespace, control or non-ASCII"),
    ("https://\uff45vil.videocc.net/x.mp4", "whitespace, control or non-ASCII"),
    # percent-encoding in the host: some parsers decode it, others do not.
    ("https://evil.example%2f.videocc.net/x.mp4", "percent-encoding"),
    ("https://evil.example%5c.videocc.net/x.mp4", "percent-encoding"),
    ("https://x%2evideocc.net/x.mp4", "percent-encoding"),
    ("https://169.254.169.254%23.videocc.net/x.mp4", "percent-encoding"),
    # ports: empty, signed, non-decimal, leading zeros, out of range, two of them.
    ("https://x.videocc.net:/x.mp4", "invalid port"),
    ("https://x.videocc.net:+443/x.mp4", "invalid port"),
    ("https://x.videocc.net:0443/x.mp4", "invalid port"),
    ("https://x.videocc.net:0x1bb/x.mp4", "invalid port"),
    ("https://x.videocc.net:65536/x.mp4", "invalid port"),
    ("https://x.videocc.net:443:80/x.mp4", "not a plain DNS name"),
    ("https://x.videocc.net:80:443/x.mp4", "not a plain DNS name"),
    ("https://x.videocc.net: 443/x.mp4", "whitespace, control or non-ASCII"),
    # IPv6 literals and IPv4 in forms other than the canonical dotted quad.
    ("https://[::ffff:169.254.169.254]/x.mp4", "IPv6"),
    ("https://[::1]/x.mp4", "IPv6"),
    ("https://[fd00:ec2::254]/latest/meta-data", "IPv6"),
    ("https://[fe80::1%25eth0]/x.mp4", "percent-encoding"),
    ("https://x.videocc.net[::1]/x.mp4", "IPv6"),
    ("https://2852039166/latest/meta-data", "non-canonical IPv4"),
    ("https://0xa9fea9fe/latest/meta-data", "non-canonical IPv4"),
    ("https://0251.0376.0251.0376/latest/meta-data", "non-canonical IPv4"),
    ("https://169.254.43518/latest/meta-data", "non-canonical IPv4"),
    ("https://127.1/x.mp4", "non-canonical IPv4"),
    ("https://127.0.0.01/x.mp4", "non-canonical IPv4"),
    ("https://0x7f.0.0.1/x.mp4", "non-canonical IPv4"),
    ("https://x.videocc.net.0x7f/x.mp4", "non-canonical IPv4"),
    ("https://x.videocc.net.1/x.mp4", "non-canonical IPv4"),
    # trailing dots: another name to TLS (SNI, certificate matching) and to some resolvers' search lists.
    ("https://x.videocc.net./x.mp4", "ends in a dot"),
    ("https://x.videocc.net../x.mp4", "ends in a dot"),
    ("https://169.254.169.254./x.mp4", "ends in a dot"),
    # names that are not plain DNS names: empty labels, underscores, other punctuation.
    ("https://x..videocc.net/x.mp4", "not a plain DNS name"),
    ("https://.x.videocc.net/x.mp4", "not a plain DNS name"),
    ("https://evil.example;.videocc.net/x.mp4", "not a plain DNS name"),
    ("https://evil.example,.videocc.net/x.mp4", "not a plain DNS name"),
    ("https://evil_example.videocc.net/x.mp4", "not a plain DNS name"),
    ("https://-x.videocc.net/x.mp4", "not a plain DNS name"),
    ("https:///x.videocc.net/x.mp4", "no host"),
    # fragments and queries where the authority is: where the host ends differs.
    ("https://evil.example#.videocc.net/x.mp4", "fragment"),
    ("https://x.videocc.net/x.mp4#@evil.example", "fragment"),
    ("https://evil.example?.videocc.net/x.mp4", "'?' in the URL's host part"),
    ("https://evil.example?@x.videocc.net/x.mp4", "userinfo"),
]


@pytest.mark.parametrize(("url", "why"), DIFFERENTIALS)
def test_a_url_whose_host_parsers_could_read_differently_is_refused(url: str, why: str) -> None:
    allow = DownloadAllowList(f"{DEFAULT_ALLOW},http://127.0.0.1:8090")
    with pytest.raises(DownloadNotAllowed) as caught:
        allow.check(url)
    assert why in str(caught.value)
    assert "auth_key" not in str(caught.value)


def test_the_reported_example_was_read_two_ways_before() -> None:
    """The premise of the refusal: urlsplit and urllib3 really disagree on this URL's host."""
    url = "https://evil.example\\.videocc.net/x.mp4"
    assert urlsplit(url).hostname == "evil.example\\.videocc.net"
    assert urllib3.util.parse_url(url).host == "evil.example"


def test_a_full_origin_admits_exactly_that_scheme_host_and_port() -> None:
    allow = DownloadAllowList("*.videocc.net,http://127.0.0.1:8090")
    target = allow.check("http://127.0.0.1:8090/dl/v.mp4?auth_key=x")
    assert (target.scheme, target.host, target.port, target.target) == (
        "http",
        "127.0.0.1",
        8090,
        "/dl/v.mp4?auth_key=x",
    )
    for other in (
        "http://127.0.0.1:8091/dl/v.mp4",
        "https://127.0.0.1:8090/dl/v.mp4",
        "http://localhost:8090/x",
        "http://127.0.0.2:8090/x",
    ):
        with pytest.raises(DownloadNotAllowed):
            allow.check(other)


def test_refusals_never_carry_the_signed_query_string() -> None:
    for url in (
        "https://evil.example/x.mp4?auth_key=SECRET-TOKEN",
        "https://x.videocc.net/x.mp4?auth_key=SECRET-TOKEN&x=\\",
        "https://x.videocc.net/x.mp4?auth_key=SECRET-TOKEN#frag",
    ):
        with pytest.raises(DownloadNotAllowed) as caught:
            DownloadAllowList(DEFAULT_ALLOW).check(url)
        assert "SECRET-TOKEN" not in str(caught.value)


def test_the_redacted_form_has_no_query() -> None:
    target = parse_download_url("https://x.videocc.net/a/b.mp4?auth_key=SECRET")
    assert target.redacted() == "https://x.videocc.net:443/a/b.mp4"


@pytest.mark.parametrize("spec", ["", " , ", "videocc.net/path", "host:8080"])
def test_malformed_allow_lists_are_configuration_errors(spec: str) -> None:
    with pytest.raises(InvalidInput, match="POLYV_DOWNLOAD_ALLOW"):
        DownloadAllowList(spec)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("*", "wildcard"),
        ("*.*", "wildcard"),
        ("*.net", "wildcard"),
        ("*.co.uk", "public suffix 'co.uk'"),
        ("*.com.cn", "public suffix 'com.cn'"),
        ("*.GitHub.io", "public suffix 'github.io'"),
        ("*.s3.amazonaws.com", "public suffix"),
        ("x.*.videocc.net", "wildcard"),
        ("*videocc.net", "wildcard"),
        ("video-dl-?.videocc.net", "plain DNS name"),
        ("[a-z].videocc.net", "plain DNS name"),
        ("169.254.169.254", "metadata"),
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("172.16.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "loopback"),
        ("100.64.0.1", "private"),
        ("localhost", "internal name"),
        ("*.localhost", "wildcard"),
        ("*.dev.localhost", "internal name"),
        ("metadata.google.internal", "internal name"),
        ("*.ec2.internal", "internal name"),
        ("instance-data", "internal name"),
        ("*.corp.local", "internal name"),
        ("printer.local", "internal name"),
        ("240.0.0.1", "loopback, private, link-local"),
        ("169.254.0.1", "link-local"),
        ("https://224.0.0.1", "loopback, private, link-local"),  # multicast: is_global says True
        ("https://192.88.99.1", "loopback, private, link-local"),  # the deprecated 6to4 relay anycast
        ("*.home.arpa", "internal name"),
        ("nas.home.arpa", "internal name"),
        ("kubernetes.default.svc", "internal name"),
        ("*.svc.cluster.local", "internal name"),
        ("*.1.2.3.4", "not an address"),
        ("http://169.254.169.254:80", "only an explicit http://127.0.0.1:PORT"),
        ("http://10.0.0.5:8080", "only an explicit http://127.0.0.1:PORT"),
        ("http://localhost:8090", "only an explicit http://127.0.0.1:PORT"),
        ("http://127.0.0.1", "only an explicit http://127.0.0.1:PORT"),
        ("https://127.0.0.1:8443", "only an explicit http://127.0.0.1:PORT"),
        ("http://127.0.0.2:8090", "only an explicit http://127.0.0.1:PORT"),
        ("http://[::1]:8090", "IPv6"),
        ("http://2130706433:8090", "non-canonical IPv4"),
        ("http://127.0.0.1:8090/dl", "without a path"),
        ("http://127.0.0.1:8090/", "without a path"),
        ("https://user@x.videocc.net", "userinfo"),
        ("http://dl.example.com:8080", "plain HTTP is accepted only for an explicit http://127.0.0.1:PORT"),
        ("http://93.184.216.34:80", "plain HTTP is accepted only for an explicit http://127.0.0.1:PORT"),
    ],
)
def test_entries_that_open_everything_or_internal_addresses_are_refused(entry: str, why: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        DownloadAllowList(f"*.videocc.net,{entry}")
    assert f"POLYV_DOWNLOAD_ALLOW entry {entry!r}" in str(caught.value)
    assert why in str(caught.value)


def test_the_local_stacks_loopback_origin_and_public_hosts_are_accepted() -> None:
    allow = DownloadAllowList(
        "*.videocc.net, dl.example.com, 93.184.216.34 ,http://127.0.0.1:8090,https://cdn.example.com:8443"
    )
    allow.check("https://dl.example.com/x.mp4")
    allow.check("https://cdn.example.com:8443/x.mp4")
    allow.check("https://93.184.216.34/x.mp4")
    allow.check("http://127.0.0.1:8090/x.mp4")
    with pytest.raises(DownloadNotAllowed):
        allow.check("https://x.dl.example.com/x.mp4")  # an exact name admits only itself


def test_a_refused_internal_address_is_not_offered_the_allow_list_as_a_remedy() -> None:
    allow = DownloadAllowList("*.videocc.net")
    with pytest.raises(DownloadNotAllowed) as internal:
        allow.check("https://169.254.169.254/latest/meta-data")
    assert "never a Polyv download host" in internal.value.describe()
    with pytest.raises(DownloadNotAllowed) as elsewhere:
        allow.check("https://cdn.example.com/x.mp4")
    assert "add the host to POLYV_DOWNLOAD_ALLOW" in elsewhere.value.describe()
