"""A real HTTP receiver for webhooks on loopback (http.server in a thread), answering a script."""

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict
    body: bytes


class Receiver:
    """Answers each POST with the next of `answers` — an HTTP status; ("sleep", seconds) before a
    200; ("dribble", seconds): headers one byte every 0.1 s, so no single read waits long; 200
    once the script runs out — `location` with a 3xx, and records each one."""

    def __init__(self, *answers, location: str = ""):
        self.answers = list(answers)
        self.location = location
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.received.append(Received(dict(self.headers), body))
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if isinstance(answer, tuple) and answer[0] == "dribble":
                    try:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        for _ in range(int(answer[1] * 10)):
                            self.wfile.write(b"a")
                            self.wfile.flush()
                            time.sleep(0.1)
                    except ConnectionError:  # the sender gave up on it, as the test wants
                        pass
                    return
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                if 300 <= answer < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gen"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
