"""Decoding of a request body sent with Content-Encoding (gzip, deflate).

The size limit applies to the decompressed bytes: a few kilobytes of gzip can expand
to gigabytes. Decompression is incremental and stops one byte past the limit, so a
"zip bomb" never costs more memory than the limit allows.
"""

from __future__ import annotations

import zlib

# zlib's window bits: a gzip member, a zlib-wrapped stream (what HTTP calls "deflate"),
# and a raw deflate stream (what some clients send as "deflate" anyway).
GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS
RAW_DEFLATE_WBITS = -zlib.MAX_WBITS

SUPPORTED = ("gzip", "deflate", "identity")
CHUNK_BYTES = 64 * 1024


class BodyDecodingError(Exception):
    """The body cannot be used; `status` is the HTTP status to answer, str() the detail."""

    status = 400


class BodyTooLarge(BodyDecodingError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body is larger than TRACK_MAX_BODY_BYTES ({limit} bytes) after decompression.")


class UnsupportedEncoding(BodyDecodingError):
    status = 415

    def __init__(self, encoding: str) -> None:
        super().__init__(f"Content-Encoding {encoding!r} is not supported; use {', '.join(SUPPORTED)}.")


class CorruptBody(BodyDecodingError):
    status = 400

    def __init__(self, encoding: str, reason: str) -> None:
        super().__init__(f"Request body is not valid {encoding} data: {reason}.")


def decode_body(body: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """Undoes every encoding listed in Content-Encoding, last applied first.

    Raises BodyTooLarge (413) past `limit` decompressed bytes, UnsupportedEncoding (415)
    for an encoding other than gzip/deflate/identity, CorruptBody (400) for bad data.
    """
    encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
    for encoding in encodings:  # refuse before doing any work
        if encoding not in SUPPORTED:
            raise UnsupportedEncoding(encoding)
    for encoding in reversed(encodings):
        if encoding == "gzip":
            body = _gunzip(body, limit=limit)
        elif encoding == "deflate":
            body = _inflate(body, limit=limit)
    if len(body) > limit:  # identity: the caller's own read limit normally caught this already
        raise BodyTooLarge(limit)
    return body


def _gunzip(data: bytes, *, limit: int) -> bytes:
    if not data:
        raise CorruptBody("gzip", "the body is empty")
    out = bytearray()
    # A gzip body may hold several members back to back (RFC 1952 section 2.2).
    while data:
        rest = _decompress(zlib.decompressobj(GZIP_WBITS), data, out, limit=limit, encoding="gzip")
        if rest and not rest.startswith(b"\x1f\x8b"):
            raise CorruptBody("gzip", f"{len(rest)} byte(s) of trailing garbage")
        data = rest
    return bytes(out)


def _inflate(data: bytes, *, limit: int) -> bytes:
    if not data:
        raise CorruptBody("deflate", "the body is empty")
    # RFC 9110 says zlib-wrapped; a zlib stream's first two bytes are a multiple of 31.
    wbits = ZLIB_WBITS if len(data) >= 2 and int.from_bytes(data[:2], "big") % 31 == 0 else RAW_DEFLATE_WBITS
    out = bytearray()
    rest = _decompress(zlib.decompressobj(wbits), data, out, limit=limit, encoding="deflate")
    if rest:
        raise CorruptBody("deflate", f"{len(rest)} byte(s) of trailing garbage")
    return bytes(out)


def _decompress(decompressor: zlib._Decompress, data: bytes, out: bytearray, *, limit: int, encoding: str) -> bytes:
    """Appends one stream's output to `out`, never more than limit + 1 bytes in all;
    returns the input left after the end of the stream."""
    pending = data
    try:
        while not decompressor.eof:
            # max_length bounds what one call may allocate; the rest waits in unconsumed_tail.
            chunk = decompressor.decompress(pending, max(1, min(CHUNK_BYTES, limit + 1 - len(out))))
            out += chunk
            if len(out) > limit:
                raise BodyTooLarge(limit)
            pending = decompressor.unconsumed_tail
            if not chunk and not pending:  # wants more input than there is
                break
    except zlib.error as exc:
        raise CorruptBody(encoding, str(exc)) from None
    if not decompressor.eof:
        raise CorruptBody(encoding, "the stream is truncated")
    return decompressor.unused_data
