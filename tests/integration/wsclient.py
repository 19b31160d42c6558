"""A minimal websocket client for talking to the fake Discord in tests (RFC 6455, ws:// only).

Standard library only (socket, base64, os, hashlib, struct, zlib; ctypes for the optional
zstd-stream decoder, which loads the system libzstd). It connects to a ws:// URL with path and
query, sends masked frames, reads frames (text, binary, close, ping/pong), reassembles fragmented
messages, and turns the Gateway's transport compression back into JSON:
  zlib-stream: one inflate context per connection, binary messages buffered until 00 00 FF FF;
  zstd-stream: one decompression context per connection, one payload per binary message.

    ws = WSClient("ws://127.0.0.1:%d/?v=10&encoding=json&compress=zlib-stream" % port)
    hello = ws.recv_json()
    ws.send_json({"op": 1, "d": None})
    ws.close(4000)
"""
import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import socket
import struct
import time
import zlib
from urllib.parse import parse_qs, urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
MAX_MESSAGE = 64 << 20  # a reassembled message, hard cap
MAX_HEADER = 16384  # the handshake answer, hard cap
ZLIB_SUFFIX = b"\x00\x00\xff\xff"


class WSClosed(Exception):
    """The connection ended. code: the close code the server sent, or None when the TCP
    connection ended without a close frame."""

    def __init__(self, code, reason=""):
        super().__init__("websocket closed (code %s%s)" % (code, ", " + reason if reason else ""))
        self.code = code
        self.reason = reason


class _ZstdStream:
    """Streaming zstd decompression through ctypes (one context for the whole connection)."""

    class _Buf(ctypes.Structure):
        _fields_ = [("ptr", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]

    _lib = None

    @classmethod
    def available(cls):
        if cls._lib is None:
            name = ctypes.util.find_library("zstd") or "libzstd.so.1"
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                cls._lib = False
                return False
            lib.ZSTD_createDStream.restype = ctypes.c_void_p
            lib.ZSTD_freeDStream.argtypes = [ctypes.c_void_p]
            lib.ZSTD_initDStream.argtypes = [ctypes.c_void_p]
            lib.ZSTD_decompressStream.restype = ctypes.c_size_t
            lib.ZSTD_decompressStream.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
            lib.ZSTD_isError.restype = ctypes.c_uint
            cls._lib = lib
        return bool(cls._lib)

    def __init__(self):
        if not self.available():
            raise RuntimeError("libzstd not found: zstd-stream cannot be decoded")
        self.ds = self._lib.ZSTD_createDStream()
        self._lib.ZSTD_initDStream(self.ds)

    def decompress(self, data):
        src = ctypes.create_string_buffer(data, len(data))
        inb = self._Buf(ctypes.cast(src, ctypes.c_void_p), len(data), 0)
        out = bytearray()
        chunk = ctypes.create_string_buffer(1 << 17)
        while True:
            outb = self._Buf(ctypes.cast(chunk, ctypes.c_void_p), len(chunk), 0)
            rc = self._lib.ZSTD_decompressStream(self.ds, ctypes.byref(outb), ctypes.byref(inb))
            if self._lib.ZSTD_isError(rc):
                raise ValueError("zstd-stream: corrupt input")
            out += chunk.raw[:outb.pos]
            if len(out) > MAX_MESSAGE:
                raise ValueError("zstd-stream: payload over the cap")
            if inb.pos >= inb.size and outb.pos < outb.size:
                return bytes(out)

    def close(self):
        if self.ds:
            self._lib.ZSTD_freeDStream(self.ds)
            self.ds = None


class WSClient:
    def __init__(self, url, timeout=5.0, headers=None):
        u = urlsplit(url)
        if u.scheme != "ws":
            raise ValueError("only ws:// URLs: %s" % url)
        self.url = url
        self.host = u.hostname
        self.port = u.port or 80
        self.resource = (u.path or "/") + ("?" + u.query if u.query else "")
        self.timeout = timeout
        q = parse_qs(u.query)
        self.compress = (q.get("compress") or [None])[0]
        self._inflate = zlib.decompressobj() if self.compress == "zlib-stream" else None
        self._zstd = _ZstdStream() if self.compress == "zstd-stream" else None
        self._zbuf = bytearray()
        self._rbuf = bytearray()
        self.closed = False
        self.close_code = None  # the code of the server's close frame, once received
        self.messages = 0  # websocket messages received (zlib-stream parts count one each)
        self.sock = socket.create_connection((self.host, self.port), timeout)
        self._handshake(headers or {})

    # -- handshake and raw frames --------------------------------------------------------------
    def _handshake(self, headers):
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % self.resource, "Host: %s:%d" % (self.host, self.port),
                 "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + key,
                 "Sec-WebSocket-Version: 13"]
        lines += ["%s: %s" % kv for kv in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self._rbuf:
            if len(self._rbuf) > MAX_HEADER:
                raise ConnectionError("handshake answer too long")
            self._fill(deadline)
        head, _, rest = bytes(self._rbuf).partition(b"\r\n\r\n")
        self._rbuf = bytearray(rest)
        status_line, *hdr_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise ConnectionError("handshake refused: %s" % status_line)
        hdrs = {}
        for line in hdr_lines:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            raise ConnectionError("bad Sec-WebSocket-Accept")

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("websocket read timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("websocket read timed out") from None
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            raise WSClosed(None, "connection dropped")
        self._rbuf += data

    def _take(self, n, deadline):
        while len(self._rbuf) < n:
            self._fill(deadline)
        out = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        return out

    def send_frame(self, opcode, payload=b"", fin=True):
        """One masked frame (the client must mask)."""
        if isinstance(payload, str):
            payload = payload.encode()
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def recv_frame(self, timeout=None):
        """(fin, opcode, payload) of the next frame."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        b0, b1 = self._take(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8, deadline))[0]
        if n > MAX_MESSAGE:
            raise ValueError("frame over the cap")
        mask = self._take(4, deadline) if b1 & 0x80 else None
        payload = self._take(n, deadline)
        if mask:
            payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    # -- messages --------------------------------------------------------------------------------
    def recv_message(self, timeout=None):
        """(opcode, data) of the next whole data message. Pings are answered; a close frame is
        echoed and raises WSClosed with its code."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if self.closed:
            raise WSClosed(self.close_code, "already closed")
        opcode, data = None, bytearray()
        while True:
            fin, op, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if op == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.close_code = code
                try:
                    self.send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
                self.closed = True
                self.sock.close()
                raise WSClosed(code, payload[2:].decode("utf-8", "replace"))
            if op != OP_CONT:
                opcode = op
            data += payload
            if len(data) > MAX_MESSAGE:
                raise ValueError("message over the cap")
            if fin:
                self.messages += 1
                return opcode, bytes(data)

    def recv_payload(self, timeout=None):
        """The next Gateway payload as text, undoing transport compression."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            opcode, data = self.recv_message(max(0.0, deadline - time.monotonic()))
            if opcode == OP_TEXT:
                return data.decode("utf-8")
            if self._zstd is not None:
                return self._zstd.decompress(data).decode("utf-8")
            if self._inflate is None:
                raise ValueError("binary message on an uncompressed connection")
            self._zbuf += data
            if len(self._zbuf) > MAX_MESSAGE:
                raise ValueError("zlib-stream: payload over the cap")
            if bytes(self._zbuf[-4:]) != ZLIB_SUFFIX:
                continue
            out = self._inflate.decompress(bytes(self._zbuf))
            self._zbuf.clear()
            return out.decode("utf-8")

    def recv_json(self, timeout=None):
        return json.loads(self.recv_payload(timeout))

    def recv_until(self, pred, timeout=None, limit=1000000):
        """Read payloads until pred(payload) is true; return every payload read, that one last."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got = []
        while len(got) < limit:
            p = self.recv_json(max(0.0, deadline - time.monotonic()))
            got.append(p)
            if pred(p):
                return got
        raise AssertionError("no matching payload in %d" % limit)

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def close(self, code=1000, reason="", wait=1.0):
        """Send a close frame with code (None: no code), wait briefly for the echo, close."""
        if not self.closed:
            payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
            try:
                self.send_frame(OP_CLOSE, payload)
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    _, op, _ = self.recv_frame(max(0.0, deadline - time.monotonic()))
                    if op == OP_CLOSE:
                        break
            except (OSError, WSClosed, TimeoutError, ValueError):
                pass
        self.drop()

    def drop(self):
        """End the TCP connection without a close frame."""
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        if self._zstd is not None:
            self._zstd.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()
