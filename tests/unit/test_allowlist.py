"""The download allow-list: host patterns mean HTTPS only; full origins are exact."""

import pytest

from polyv_retriever.errors import DownloadNotAllowed, InvalidInput
from polyv_retriever.transfer.allowlist import DEFAULT_ALLOW, DownloadAllowList


@pytest.mark.parametrize(
    "url",
    [
        "https://video-dl-2.videocc.net/1b448be323/6/x.mp4?auth_key=1-2-3-4",
        "https://VIDEO-DL-2.videocc.net./x.mp4",
        "https://dl.polyv.net/x.mp4",
    ],
)
def test_polyv_download_hosts_over_https_are_allowed_by_default(url: str) -> None:
    DownloadAllowList(DEFAULT_ALLOW).check(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://video-dl-2.videocc.net/x.mp4", "http://video-dl-2.videocc.net:80 is not allowed"),
        ("https://video-dl-2.videocc.net:8443/x.mp4", ":8443 is not allowed"),
        ("https://videocc.net.evil.example/x.mp4", "videocc.net.evil.example:443 is not allowed"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254:443 is not allowed"),
        ("https://user:pw@video-dl-2.videocc.net/x.mp4", "URL with credentials refused"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("ftp://video-dl-2.videocc.net/x", "not an http(s) URL"),
    ],
)
def test_anything_else_is_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(DownloadNotAllowed) as caught:
        DownloadAllowList(DEFAULT_ALLOW).check(url)
    assert why in str(caught.value)


def test_a_full_origin_admits_exactly_that_scheme_host_and_port() -> None:
    allow = DownloadAllowList("*.videocc.net,http://127.0.0.1:8090")
    allow.check("http://127.0.0.1:8090/dl/v.mp4?auth_key=x")
    for other in (
        "http://127.0.0.1:8091/dl/v.mp4",
        "https://127.0.0.1:8090/dl/v.mp4",
        "http://localhost:8090/x",
    ):
        with pytest.raises(DownloadNotAllowed):
            allow.check(other)


def test_refusals_never_carry_the_signed_query_string() -> None:
    with pytest.raises(DownloadNotAllowed) as caught:
        DownloadAllowList(DEFAULT_ALLOW).check("https://evil.example/x.mp4?auth_key=SECRET-TOKEN")
    assert "SECRET-TOKEN" not in str(caught.value)


@pytest.mark.parametrize("spec", ["", " , ", "videocc.net/path", "host:8080"])
def test_malformed_allow_lists_are_configuration_errors(spec: str) -> None:
    with pytest.raises(InvalidInput, match="POLYV_DOWNLOAD_ALLOW"):
        DownloadAllowList(spec)
