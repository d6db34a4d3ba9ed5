#!/usr/bin/env python3
"""A stand-in for the CVM and CBS APIs the example calls: prints every JSON POST it gets
({"Action": "CreateSnapshot" | "RebootInstances", …}) and answers 200. Port: argv[1] or 9100."""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        print(body.decode(), flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"Response":{"RequestId":"standin"}}')

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9100
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
