#!/usr/bin/env python3
"""make bench, hostile clients: for each attack, a fresh server on loopback, the attack from
127.0.0.3 and a legitimate client on 127.0.0.2 sending `GET /hello` on new connections. Prints
the legitimate client's p50/p99 latency during the attack against its latency with no attack,
the server's peak RSS, and how long until the attacker's connections were closed.

Usage: bench/attacks.py SERVER_BINARY WORK_DIR   (every loop is bounded in count and time)
"""

import gzip
import hashlib
import io
import os
import resource
import signal
import tarfile
import shutil
import socket
import subprocess
import sys
import threading
import time

SERVER, WORK = sys.argv[1], sys.argv[2]
ATTACKER, LEGIT = "127.0.0.3", "127.0.0.2"
HELLO = b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
WINDOW = 5.0  # seconds of legitimate requests per measurement


def start_server(name, args=(), files=None, drain=True):
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
    if drain:
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
    flood = b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: localhost\r\n\r\n" * 200_000
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


def wordy_package(n):
    """A valid package whose description is 200 KiB (what a package may list)."""
    ident = f"io.example.wordy{n:03}"
    header = ("%YAML 1.1\n---\nformatType: 'am-package-header'\nformatVersion: 2\n---\n"
              f"diskSpaceUsed: 4096\npackageId: '{ident}'\n").encode()
    info = ("formatVersion: 1\nformatType: am-package\n---\n"
            f"id: '{ident}'\nicon: 'icon.png'\nname: {{en: 'Wordy {n}'}}\n"
            f"description: {{en: '{'d' * 200 * 1024}'}}\ncategories: ['c{n}']\n"
            f"applications:\n- id: '{ident}'\n  runtime: 'native'\n  code: 'x'\n").encode()
    icon = b"\x89PNG icon"
    digest = hashlib.sha256()
    for name, data in (("info.yaml", info), ("icon.png", icon)):
        digest.update(data)
        digest.update(f"F/{len(data)}/{name}".encode())
    footer = ("%YAML 1.1\n---\nformatType: 'am-package-footer'\nformatVersion: 2\n---\n"
              f"digest: '{digest.hexdigest()}'\n").encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("--PACKAGE-HEADER--", header), ("info.yaml", info),
                           ("icon.png", icon), ("--PACKAGE-FOOTER--", footer)):
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def request(source, port, head, body=b""):
    with connect(source, port, timeout=30) as s:
        s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def unread_answers(port, stop):
    """Metadata-heavy uploads (60 packages of 200 KiB descriptions: 12 MB lists and pages),
    then 12 connections each for the page, both lists and 50 different filters that ask and
    never read."""
    for n in range(60):
        body = wordy_package(n)
        head = (f"PUT /package/upload HTTP/1.1\r\nHost: localhost\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        request(ATTACKER, port, head, body)
    sockets = []
    targets = ["/", "/package/list", "/category/list"] * 12
    targets += [f"/package/list?filter=wordy%20{n}" for n in range(50)]
    targets += [f"/?filter=wordy%20{n}" for n in range(50)]
    for target in targets:
        try:
            s = connect(ATTACKER, port, timeout=5)
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            s.recv(1)
            sockets.append(s)
        except OSError:
            pass
    stop.wait(20)
    return sockets


def console_flood(port, stop):
    """Removals of 4 KiB ids that match nothing, each a console line, while nobody reads the
    server's stdout."""
    end = time.monotonic() + 20
    while not stop.is_set() and time.monotonic() < end:
        try:
            request(ATTACKER, port, (f"POST /package/remove?id={'x' * 4000} HTTP/1.1\r\n"
                                     "Host: localhost\r\nConnection: close\r\n\r\n").encode())
        except OSError:
            pass
    return []


def stalled_stdout_stop(name):
    """A server whose stdout nobody reads, flooded with console lines, then SIGTERM: how long
    it takes to stop."""
    proc, port = start_server(name.split(" ")[0], args=("--log-requests",), drain=False)
    try:
        stop = threading.Event()
        thread = threading.Thread(target=console_flood, args=(port, stop))
        thread.start()
        during = measure(port)
        stop.set()
        thread.join(60)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
            stopped = f"{time.monotonic() - t0:.2f} s"
        except subprocess.TimeoutExpired:
            stopped = "NOT within 30 s"
        print(f"  {name}: /hello p50/p99 {during[0]:.2f}/{during[1]:.2f} ms during the flood "
              f"({during[2]} failed); stopped {stopped} after SIGTERM", flush=True)
    finally:
        proc.kill()
        proc.wait(10)


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
    run("unread answers: 12 MB lists and pages asked for on 136 connections that never read",
        unread_answers)
    stalled_stdout_stop("stalled stdout: a console flood nobody reads")
    shutil.rmtree(WORK, ignore_errors=True)


main()
