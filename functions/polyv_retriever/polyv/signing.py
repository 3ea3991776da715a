"""Polyv's v3 MD5 request signature (``VodSignUtil.getMd5Sign`` in Polyv's Java SDK).

The server signs exactly what it receives, so the signature covers every non-empty parameter that will be
sent, ``sign`` excepted, in ordinal key order, ``key + value`` with no separators, the secret at both ends,
MD5 over UTF-8, uppercase hex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping


def signed_fields(params: Mapping[str, object | None]) -> dict[str, str]:
    """The parameters as they are sent and signed: ``sign`` and null/empty values dropped, all as str."""
    return {k: str(v) for k, v in params.items() if k != "sign" and v is not None and str(v) != ""}


def sign(params: Mapping[str, object | None], secret: str) -> str:
    fields = signed_fields(params)
    # sorted() on str compares code points: ordinal order, so "Z" sorts before "a" as Polyv expects.
    plain = "".join(key + fields[key] for key in sorted(fields))
    return hashlib.md5((secret + plain + secret).encode("utf-8"), usedforsecurity=False).hexdigest().upper()


def signed_params(params: Mapping[str, object | None], secret: str) -> dict[str, str]:
    """``params`` ready to send: cleaned exactly as signed, with ``sign`` added."""
    fields = signed_fields(params)
    fields["sign"] = sign(fields, secret)
    return fields
