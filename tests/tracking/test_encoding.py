"""Content-Encoding of /track bodies: gzip and deflate, bounded after decompression."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib

import pytest

from tracking.encoding import BodyTooLarge, CorruptBody, UnsupportedEncoding, decode_body

JSON = b'{"source": {"id": "s"}, "events": [{"type": "page-view"}]}'
LIMIT = 1024 * 1024


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_identity_and_no_encoding_pass_through():
    assert decode_body(JSON, None, limit=LIMIT) == JSON
    assert decode_body(JSON, "", limit=LIMIT) == JSON
    assert decode_body(JSON, "identity", limit=LIMIT) == JSON


def test_gzip_is_decompressed():
    assert decode_body(gzip.compress(JSON), "gzip", limit=LIMIT) == JSON
    assert decode_body(gzip.compress(JSON), " GZip ", limit=LIMIT) == JSON


def test_gzip_of_several_members_is_decompressed_whole():
    assert decode_body(gzip.compress(JSON[:10]) + gzip.compress(JSON[10:]), "gzip", limit=LIMIT) == JSON


def test_deflate_is_decompressed_zlib_wrapped_or_raw():
    assert decode_body(zlib.compress(JSON), "deflate", limit=LIMIT) == JSON
    assert decode_body(raw_deflate(JSON), "deflate", limit=LIMIT) == JSON


def test_several_encodings_are_undone_last_first():
    assert decode_body(gzip.compress(JSON), "gzip, identity", limit=LIMIT) == JSON
    assert decode_body(zlib.compress(gzip.compress(JSON)), "gzip, deflate", limit=LIMIT) == JSON


def test_exactly_the_limit_is_accepted_one_byte_more_is_not():
    body = b"x" * 1000
    assert decode_body(gzip.compress(body), "gzip", limit=1000) == body
    with pytest.raises(BodyTooLarge) as raised:
        decode_body(gzip.compress(body + b"x"), "gzip", limit=1000)
    assert raised.value.status == 413
    assert str(raised.value) == "Request body is larger than TRACK_MAX_BODY_BYTES (1000 bytes) after decompression."


def test_an_identity_body_over_the_limit_is_refused():
    with pytest.raises(BodyTooLarge):
        decode_body(b"x" * 11, "identity", limit=10)


def gzip_bomb(mebibytes: int) -> bytes:
    """One gzip member of `mebibytes` MiB of zeros, built in a fraction of a second: after a
    full flush the compressor forgets its past, so each further MiB compresses to the same bytes."""
    zeros = bytes(1024 * 1024)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (mebibytes * len(zeros)) & 0xFFFFFFFF)
    return header + block * mebibytes + compressor.flush(zlib.Z_FINISH) + trailer


def test_the_bomb_builder_builds_valid_gzip():
    assert gzip.decompress(gzip_bomb(3)) == bytes(3 * 1024 * 1024)


def test_a_gzip_bomb_is_refused_quickly_without_allocating_its_size():
    bomb = gzip_bomb(1024)  # 1 GiB of zeros
    assert len(bomb) < 2 * 1024 * 1024
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(BodyTooLarge):
            decode_body(bomb, "gzip", limit=LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    # The limit, plus a chunk and the copies of the (compressed) input zlib keeps.
    assert peak < LIMIT + 4 * len(bomb) + 512 * 1024, peak


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (b"not gzip at all", "gzip", "Request body is not valid gzip data: "),
        (gzip.compress(JSON)[:-12], "gzip", "Request body is not valid gzip data: the stream is truncated."),
        (gzip.compress(JSON) + b"junk", "gzip", "Request body is not valid gzip data: 4 byte(s) of trailing garbage."),
        (b"", "gzip", "Request body is not valid gzip data: the body is empty."),
        (b"\xff\xfe\xfd", "deflate", "Request body is not valid deflate data: "),
        (zlib.compress(JSON)[:-3], "deflate", "Request body is not valid deflate data: "),
    ],
)
def test_corrupt_data_is_refused_with_400(body, encoding, message):
    with pytest.raises(CorruptBody) as raised:
        decode_body(body, encoding, limit=LIMIT)
    assert raised.value.status == 400
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("encoding", ["br", "gzip, br", "compress", "zstd"])
def test_an_unknown_encoding_is_refused_with_415(encoding):
    with pytest.raises(UnsupportedEncoding) as raised:
        decode_body(JSON, encoding, limit=LIMIT)
    assert raised.value.status == 415
    assert str(raised.value).endswith("is not supported; use gzip, deflate, identity.")
