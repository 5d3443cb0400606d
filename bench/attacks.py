#!/usr/bin/env python3
"""make bench, hostile clients: for each attack, a fresh server on loopback, the attack from
127.0.0.3 and a legitimate client on 127.0.0.2 sending `GET /hello` on new connections. Prints
the legitimate client's p50/p99 latency during the attack against its latency with no attack,
the server's peak RSS, and how long until the attacker's connections were closed.

Usage: bench/attacks.py SERVER_BINARY WORK_DIR   (every loop is bounded in count and time)
"""

import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time

SERVER, WORK = sys.argv[1], sys.argv[2]
ATTACKER, LEGIT = "127.0.0.3", "127.0.0.2"
HELLO = b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
WINDOW = 5.0  # seconds of legitimate requests per measurement


def start_server(name, args=(), files=None):
    name = "".join(c for c in name if c.isalnum())
    data = os.path.join(WORK, name)
    os.makedirs(data, exist_ok=True)
    limit = None
    if files:
        limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    proc = subprocess.Popen(
        [SERVER, "--dd", data, "--la", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=limit)
    for line in proc.stdout:
        if line.startswith("> HTTP server listening on: "):
            port = int(line.rsplit(":", 1)[1])
            break
    else:
        raise SystemExit(f"{name}: the server did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, port


def peak_rss_mib(proc):
    with open(f"/proc/{proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def connect(source, port, timeout=10.0):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def hello_latency(port):
    """Seconds for one GET /hello on a new connection, or None when it failed."""
    t0 = time.perf_counter()
    try:
        with connect(LEGIT, port, timeout=10.0) as s:
            s.sendall(HELLO)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            return None
    except OSError:
        return None
    return time.perf_counter() - t0


def measure(port):
    """p50 and p99 in ms, and the count of failed requests, over WINDOW seconds."""
    latencies, failed = [], 0
    end = time.monotonic() + WINDOW
    while time.monotonic() < end and len(latencies) + failed < 20000:
        t = hello_latency(port)
        if t is None:
            failed += 1
        else:
            latencies.append(t * 1000)
    latencies.sort()
    if not latencies:
        return float("nan"), float("nan"), failed
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    return pick(0.5), pick(0.99), failed


def wait_closed(sockets, limit):
    """Wait until the server closed every socket (at most `limit` seconds); False if not."""
    end = time.monotonic() + limit
    for s in sockets:
        try:
            s.settimeout(max(0.01, end - time.monotonic()))
            while s.recv(65536):
                pass
        except socket.timeout:
            return False
        except OSError:
            pass
    return True


def pipelining_flood(port, stop):
    """One connection writes 200,000 pipelined requests and never reads; returns when the
    server has closed it (a write fails)."""
    s = connect(ATTACKER, port)
    s.settimeout(0.5)
    flood = b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: x\r\n\r\n" * 200_000
    sent, end = 0, time.monotonic() + 120
    while time.monotonic() < end:
        try:
            sent += s.send(flood[sent:] if sent < len(flood) else HELLO)
        except socket.timeout:
            pass
        except OSError:
            return []
    return [s]


def trickle(port, stop, head, count):
    """`count` connections send `head`, then a byte every 5 s until `stop`; returns those
    still open."""
    sockets = []
    for _ in range(count):
        try:
            s = connect(ATTACKER, port, timeout=5)
            s.send(head)
            sockets.append(s)
        except OSError:
            pass
    while not stop.wait(5):
        for s in sockets:
            try:
                s.send(b"a")
            except OSError:
                pass
    return sockets


def slow_bodies(port, stop):
    head = b"PUT /package/upload HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n\x1f"
    return trickle(port, stop, head, 64)


def slow_heads(port, stop):
    return trickle(port, stop, b"GET /hello HTTP/1.1\r\nX-Slow: ", 4200)


def run(name, attack, files=None):
    proc, port = start_server(name.split(" ")[0], files=files)
    try:
        base = measure(port)
        stop, result = threading.Event(), []
        t0 = time.monotonic()
        thread = threading.Thread(target=lambda: result.append(attack(port, stop)))
        thread.start()
        time.sleep(0.5)  # let the attack get going
        during = measure(port)
        stop.set()
        thread.join(150)
        sockets = result[0] if result else []
        closed = time.monotonic() - t0 if wait_closed(sockets, 90) and result else float("inf")
        for s in sockets:
            s.close()
        rss = peak_rss_mib(proc)
        after = hello_latency(port)
        print(f"  {name}: /hello p50/p99 {during[0]:.2f}/{during[1]:.2f} ms during the attack "
              f"({during[2]} failed) vs {base[0]:.2f}/{base[1]:.2f} ms without; "
              f"peak RSS {rss:.1f} MiB; attacker closed after {closed:.1f} s; "
              f"answers afterwards: {'yes' if after is not None else 'NO'}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    os.makedirs(WORK, exist_ok=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print("hostile clients (attacker 127.0.0.3, legitimate client 127.0.0.2, new connection per /hello):")
    run("pipelining flood (200,000 requests, never read)", pipelining_flood)
    run("slow-bodies: 64 uploads (1 byte / 5 s)", slow_bodies)
    run("slow-heads: 4,200 connections from one address (1 byte / 5 s)", slow_heads)
    run("descriptors: the same with a limit of 256 file descriptors", slow_heads, files=256)
    shutil.rmtree(WORK, ignore_errors=True)


main()
