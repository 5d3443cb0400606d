#!/usr/bin/env python3
"""make bench: COUNT connections from one address, all open at once, each sending GET /hello;
prints how many were not answered 200. Usage: bench/parallel.py PORT COUNT"""

import resource
import socket
import sys

PORT, COUNT = int(sys.argv[1]), int(sys.argv[2])
HELLO = b"GET /hello?project-id=PROJECT HTTP/1.1\r\nHost: localhost\r\n\r\n"

hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, COUNT + 256), hard))
sockets, failures = [], 0
for _ in range(COUNT):
    try:
        sockets.append(socket.create_connection(("127.0.0.1", PORT), timeout=30))
    except OSError:
        failures += 1
for s in sockets:
    try:
        s.sendall(HELLO)
    except OSError:
        pass
for s in sockets:
    try:
        if not s.recv(4096).startswith(b"HTTP/1.1 200"):
            failures += 1
    except OSError:
        failures += 1
for s in sockets:
    s.close()
print(failures)
