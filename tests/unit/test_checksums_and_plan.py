"""Full-object CRC32 from part CRCs, and part plans within S3's rules and the memory budget."""

import random
import zlib

import pytest

from polyv_retriever.transfer import checksums
from polyv_retriever.transfer.engine import S3_MAX_PARTS, S3_MIN_PART, MiB, TransferSettings, plan


@pytest.mark.parametrize("length", [0, 1, 15, 16, 63, 64, 65, 4095, 65537, 8 * 1024 * 1024 + 3])
def test_the_fast_crc32_is_zlibs_crc32(length: int) -> None:
    """S3 checks what we send against its own CRC32: the accelerated one must be the very same function,
    at every length its SIMD loops treat differently, and when continued from a previous value."""
    data = random.Random(length).randbytes(length)
    assert checksums.crc32(data) == zlib.crc32(data)
    assert checksums.crc32(data, 0x12345678) == zlib.crc32(data, 0x12345678)
    assert checksums.crc32(memoryview(bytearray(data))) == zlib.crc32(data)


@pytest.mark.parametrize("seed", range(5))
def test_combined_part_crcs_equal_the_crc_of_the_whole(seed: int) -> None:
    rng = random.Random(seed)
    parts = [rng.randbytes(rng.randint(0, 5000)) for _ in range(rng.randint(1, 8))]
    combined = zlib.crc32(parts[0])
    for part in parts[1:]:
        combined = checksums.crc32_combine(combined, zlib.crc32(part), len(part))
    assert combined == zlib.crc32(b"".join(parts))


def test_combining_part_sized_lengths_matches_zlib() -> None:
    # Real parts are mebibytes long, and all but the last share one length (the cached operator).
    head, tail = b"\x01" * 1000, bytes(8 * MiB + 3)
    crc = checksums.crc32_combine(zlib.crc32(head), zlib.crc32(tail), len(tail))
    assert crc == zlib.crc32(head + tail)
    again = checksums.crc32_combine(crc, zlib.crc32(tail), len(tail))
    assert again == zlib.crc32(head + tail + tail)


def test_s3_checksum_encoding_round_trips() -> None:
    crc = zlib.crc32(b"hello")
    assert checksums.from_s3(checksums.to_s3(crc)) == crc
    assert checksums.to_s3(0x3610A686) == "NhCmhg=="


@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 100 * MiB + 7, 4 * 1024 * MiB, 80 * 1024 * MiB, 5 * 1024**4])
@pytest.mark.parametrize("ranged", [True, False])
def test_plans_obey_s3_rules_and_the_memory_budget(size: int, ranged: bool) -> None:
    settings = TransferSettings()
    p = plan(size, settings, ranged)
    assert p.part_count <= S3_MAX_PARTS
    assert p.part_size >= S3_MIN_PART
    assert p.part_size % MiB == 0
    assert p.part_size * p.part_count >= size
    assert p.bounds(p.part_count)[1] == size
    buffers = p.workers * p.part_size * (1 if ranged else 2)
    assert buffers <= max(settings.memory_budget, p.part_size * (1 if ranged else 2))


def test_memory_in_flight_does_not_grow_with_the_file() -> None:
    settings = TransferSettings()
    small, large = plan(400 * MiB, settings, True), plan(4 * 1024 * MiB, settings, True)
    assert small.workers * small.part_size == large.workers * large.part_size
