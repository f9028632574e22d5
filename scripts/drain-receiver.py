#!/usr/bin/env python3
"""Log drain receivers for the tests and scripts/bench-drains, on 127.0.0.1 only.

    drain-receiver.py https PORT CERT KEY OUT    logplex POSTs over HTTPS
    drain-receiver.py syslog PORT CERT KEY OUT   RFC 5425 (octet-counted syslog over TLS)

Each message is appended to OUT as one line, `RECEIVED_MS MESSAGE` (the receiver's clock,
milliseconds since the epoch). An HTTPS batch seen before (its Logplex-Frame-Id) is taken
but not written again. Prints `ready` once listening; exits by itself after 5 minutes.
"""
import http.server, os, socketserver, ssl, sys, threading, time
mode, port, cert, key, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
threading.Timer(300, lambda: os._exit(0)).start()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
lock = threading.Lock()
seen = set()
def write(messages):
    now = int(time.time() * 1000)
    with lock, open(out, "a") as f:
        for m in messages:
            f.write(f"{now} " + m.rstrip("\n") + "\n")
def frames(data):
    found, i = [], 0
    while i < len(data):
        sp = data.index(b" ", i)
        n = int(data[i:sp])
        found.append(data[sp + 1:sp + 1 + n].decode())
        i = sp + 1 + n
    return found, data[i:]
class Logplex(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.headers["Content-Type"] == "application/logplex-1"
        messages, _ = frames(body)
        assert len(messages) == int(self.headers["Logplex-Msg-Count"])
        frame = self.headers["Logplex-Frame-Id"]
        with lock:
            new = frame not in seen
            seen.add(frame)
        if new:
            write(messages)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
class Syslog(socketserver.BaseRequestHandler):
    def handle(self):
        rest = b""
        while True:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            rest += chunk
            while b" " in rest:
                sp = rest.index(b" ")
                n = int(rest[:sp])
                if len(rest) < sp + 1 + n:
                    break
                write([rest[sp + 1:sp + 1 + n].decode()])
                rest = rest[sp + 1 + n:]
if mode == "https":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Logplex)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
else:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Syslog)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
