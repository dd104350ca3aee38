"""A minimal OTLP/HTTP trace collector for h1-traced: accepts protobuf POSTs
(`ExportTraceServiceRequest`), counts the spans in them and answers 200 with an
empty body; `GET /count` answers {"requests": n, "spans": m} as JSON.

Run as a script (`python3 collector.py PORT`), pinned by the harness to the
client CPUs. One asyncio loop, HTTP/1.1 keep-alive (Envoy's exporter pools its
connections; Outrigger's opens one per batch). No dependency: the spans are
counted by walking the protobuf wire format (field 1 of the request: resource
spans; field 2 of those: scope spans; field 2 of those: spans).
"""

from __future__ import annotations

import asyncio
import json
import sys

COUNTS = {"requests": 0, "spans": 0, "bad": 0}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        if not c & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(b: bytes):
    """(field number, bytes) of every length-delimited field; others skipped."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(b, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated field")
            yield num, b[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wire}")


def count_spans(body: bytes) -> int:
    n = 0
    for f, rs in _fields(body):
        if f != 1:
            continue
        for g, ss in _fields(rs):
            if g != 2:
                continue
            n += sum(1 for h, _ in _fields(ss) if h == 2)
    return n


async def _read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readline()
    return await reader.readexactly(int(headers.get("content-length", "0")))


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            method, path = (line.decode("latin-1").split(" ") + ["", ""])[:2]
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await _read_body(reader, headers)
            if method == "GET" and path.startswith("/count"):
                out = json.dumps(COUNTS).encode()
                ctype = b"application/json"
            else:
                COUNTS["requests"] += 1
                try:
                    COUNTS["spans"] += count_spans(body)
                except ValueError:
                    COUNTS["bad"] += 1
                out, ctype = b"", b"application/x-protobuf"
            close = headers.get("connection", "").lower() == "close"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
                         + str(len(out)).encode() + b"\r\n"
                         + (b"connection: close\r\n" if close else b"") + b"\r\n" + out)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
