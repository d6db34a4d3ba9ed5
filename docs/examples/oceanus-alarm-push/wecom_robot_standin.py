#!/usr/bin/env python3
"""A stand-in for a WeCom group robot webhook (https://qyapi.weixin.qq.com/cgi-bin/webhook/send):
prints each message it gets and answers {"errcode":0,"errmsg":"ok"}, as the real robot does.
Port: argv[1] or 9200."""

import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        kind = body.get("msgtype")
        print(f"[{kind}] {body.get(kind, {}).get('content')}", flush=True)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errcode":0,"errmsg":"ok"}')

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 9200
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
