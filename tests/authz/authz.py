"""External authorization service for tests/ext_authz.rs and the `ext-authz` loadtest.

Serves envoy.service.auth.v3.Authorization/Check (grpcio, messages from xds-protos) and
a plain-HTTP authorization service on 127.0.0.1 (ephemeral ports), then prints
`PORTS <grpc> <http>` and runs until killed.

The answer is chosen by the checked request's `x-authz` header:
  allow (default)  OK; upstream request: x-authz-added: yes (overwrite),
                   x-authz-appended: a (append), x-remove-me removed;
                   client response: x-authz-client: hello
  deny             401, www-authenticate: Bearer realm="test", x-deny-reason: test,
                   body "denied by test"
  deny-bare        a denial with no http response (Envoy's default 403)
  slow             sleeps 3 s, then allows (the proxy's timeout runs out first)
  fail             the gRPC call fails (UNAVAILABLE); HTTP: the connection is closed
A request whose body (`with_request_body`: `body`, `raw_body` or the HTTP request's body)
contains `deny-me` is denied as `deny` is.

With `--log FILE`, every check is appended to FILE as one JSON line: what the proxy
sent (gRPC: the attributes that matter; HTTP: method, path, headers, body).
With `--net-mode-file FILE`, a check without an HTTP request (the network filter's) is
denied while FILE says `deny`, else allowed.
With `--allow-all`, every check is allowed with no mutation and nothing is logged
(the loadtest).
"""
import argparse
import json
import socket
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

LOCK = threading.Lock()


def log(path, entry):
    if not path:
        return
    with LOCK:
        with open(path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()


def header(key, value, append=None, action=None):
    h = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))
    if append is not None:
        h.append.value = append
    if action is not None:
        h.append_action = action
    return h


class Authz(external_auth_pb2_grpc.AuthorizationServicer):
    def __init__(self, log_path, allow_all, net_mode):
        self.log_path = log_path
        self.allow_all = allow_all
        self.net_mode = net_mode

    def Check(self, request, context):
        if self.allow_all:
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))
        a = request.attributes
        http = a.request.http
        log(self.log_path, {
            "kind": "grpc",
            "source_address": a.source.address.socket_address.address,
            "source_port": a.source.address.socket_address.port_value,
            "source_principal": a.source.principal,
            "destination_address": a.destination.address.socket_address.address,
            "destination_port": a.destination.address.socket_address.port_value,
            "destination_principal": a.destination.principal,
            "method": http.method,
            "path": http.path,
            "host": http.host,
            "scheme": http.scheme,
            "protocol": http.protocol,
            "size": http.size,
            "headers": dict(http.headers),
            "body": http.body,
            "raw_body": http.raw_body.hex(),
            "context_extensions": dict(a.context_extensions),
            "metadata": dict(context.invocation_metadata()),
        })
        mode = http.headers.get("x-authz", "allow")
        if "deny-me" in http.body or b"deny-me" in http.raw_body:
            mode = "deny"
        if not http.method and self.net_mode:
            try:
                with open(self.net_mode) as f:
                    mode = f.read().strip() or "allow"
            except OSError:
                mode = "allow"
            if mode == "deny":
                mode = "deny-bare"
        if mode == "slow":
            time.sleep(3)
            mode = "allow"
        if mode == "fail":
            context.abort(grpc.StatusCode.UNAVAILABLE, "told to fail")
        if mode == "deny-bare":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED))
        if mode == "deny":
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
                denied_response=external_auth_pb2.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=401),
                    headers=[header("www-authenticate", 'Bearer realm="test"', append=False),
                             header("x-deny-reason", "test", append=False)],
                    body="denied by test"))
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=[header("x-authz-added", "yes", append=False),
                         header("x-authz-appended", "a", append=True)],
                headers_to_remove=["x-remove-me"],
                response_headers_to_add=[header("x-authz-client", "hello", append=False)]))


def http_handler(log_path, allow_all):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def handle_one(self):
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            if allow_all:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            log(log_path, {
                "kind": "http",
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body": body.decode("utf-8", "replace"),
            })
            mode = self.headers.get("x-authz", "allow")
            if b"deny-me" in body:
                mode = "deny"
            if mode == "slow":
                time.sleep(3)
                mode = "allow"
            if mode == "fail":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if mode in ("deny", "deny-bare"):
                text = b"denied by test"
                self.send_response(401)
                self.send_header("www-authenticate", 'Bearer realm="test"')
                self.send_header("x-deny-reason", "test")
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return
            self.send_response(200)
            self.send_header("x-authz-added", "yes")
            self.send_header("x-authz-appended", "a")
            self.send_header("x-authz-client", "hello")
            self.send_header("x-envoy-auth-headers-to-remove", "x-remove-me")
            self.send_header("x-not-allowed", "no")
            self.send_header("content-length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_one

    return H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", default="")
    ap.add_argument("--allow-all", action="store_true")
    ap.add_argument("--net-mode-file", default="")
    ap.add_argument("--grpc-port", type=int, default=0)
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
        Authz(args.log, args.allow_all, args.net_mode_file), server)
    grpc_port = server.add_insecure_port("127.0.0.1:%d" % args.grpc_port)
    server.start()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.http_port), http_handler(args.log, args.allow_all))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print("PORTS %d %d" % (grpc_port, httpd.server_address[1]), flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
