#!/usr/bin/env python3
"""TCP figures for bench/overlay-cluster.sh, run with nsenter in a task's network namespace
(the host's python3 in the task's netns: busybox nc, one read/write of a few KiB per call,
bounds throughput well below what veths and VXLAN carry).

  recv PORT                 accept connections forever; each: read to EOF, answer one byte
  send HOST PORT MB         send MB MiB, wait for the answer; print MB/s
  rate HOST PORT SECS       sequential HTTP/1.0 GETs for SECS; print connections/s
  watch HOST PORT SECS      a GET every 20 ms for SECS (0.3 s timeout each); print when
                            (ms since the epoch) the last one failed, 0 if none did
"""
import socket
import sys
import time


def recv(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    buf = bytearray(1 << 20)
    while True:
        conn, _ = srv.accept()
        with conn:
            while conn.recv_into(buf):
                pass
            conn.sendall(b"k")


def send(host, port, mb):
    chunk = b"\0" * (1 << 20)
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as s:
        for _ in range(mb):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    print(int(mb / (time.monotonic() - start)))


def get(host, port, timeout):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        body = b""
        while True:
            b = s.recv(65536)
            if not b:
                return body
            body += b


def rate(host, port, secs):
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        get(host, port, 2)
        n += 1
    print(n // secs)


def watch(host, port, secs):
    start = time.monotonic()
    last_fail = 0
    while time.monotonic() - start < secs:
        t = time.monotonic()
        try:
            if not get(host, port, 0.3):
                last_fail = int(time.time() * 1000)
        except OSError:
            last_fail = int(time.time() * 1000)
        time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
    print(last_fail)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "recv":
        recv(int(args[0]))
    elif mode == "send":
        send(args[0], int(args[1]), int(args[2]))
    elif mode == "rate":
        rate(args[0], int(args[1]), int(args[2]))
    elif mode == "watch":
        watch(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(__doc__)
