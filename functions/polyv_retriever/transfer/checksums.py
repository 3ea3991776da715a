"""CRC32 (the zlib/S3 polynomial) of a whole object from the CRCs of its parts.

Parts are downloaded and uploaded out of order and in parallel, so the whole object's CRC32 cannot be
computed as one stream; zlib's ``crc32_combine`` (not exposed by Python) joins part CRCs instead. S3
computes the same full-object CRC32 (ChecksumType FULL_OBJECT) and refuses to complete an upload whose CRC
differs from the one we send: that compares what S3 assembled with what we read from the source.
"""

from __future__ import annotations

import base64
import zlib

_POLY = 0xEDB88320


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, index = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[index]
        vector >>= 1
        index += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC32 of A+B given crc32(A), crc32(B) and len(B) (zlib's algorithm)."""
    if length2 <= 0:
        return crc1
    odd = [_POLY] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)
        if length2 & 1:
            crc1 = _gf2_times(even, crc1)
        length2 >>= 1
        if not length2:
            break
        odd = _gf2_square(even)
        if length2 & 1:
            crc1 = _gf2_times(odd, crc1)
        length2 >>= 1
        if not length2:
            break
    return crc1 ^ crc2


def composite(part_crcs: list[int]) -> str:
    """S3's COMPOSITE multipart checksum: the CRC32 of the parts' CRC32s, with the part count."""
    joined = b"".join(crc.to_bytes(4, "big") for crc in part_crcs)
    return f"{to_s3(zlib.crc32(joined))}-{len(part_crcs)}"


def to_s3(crc: int) -> str:
    """S3's representation: base64 of the big-endian 4 bytes."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def from_s3(value: str) -> int:
    return int.from_bytes(base64.b64decode(value), "big")
