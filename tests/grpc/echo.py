"""gRPC peer for tests/grpc.rs: a grpcio server and client on either side of the proxy.

Starts an insecure (h2c) gRPC server on 127.0.0.1 with an ephemeral port and prints
`PORT <n>`. Then reads one line from stdin, the proxy's HOST:PORT, makes calls through
it and prints one JSON line with what it saw. Methods use raw bytes (no protobuf):
  /test.Echo/Unary   unary: answers b"echo:" + request, trailing metadata x-trailer: yes
  /test.Echo/Upload  client streaming: answers the concatenation of the requests
  /test.Echo/Ticks   server streaming: answers N messages for a request b"N"
  /test.Echo/Bidi    bidirectional: answers each request with b"echo:" + request
  /test.Echo/Fail    unary: aborts with NOT_FOUND "no such thing"
"""
import json
import sys
from concurrent import futures

import grpc


def unary(req, ctx):
    ctx.set_trailing_metadata((("x-trailer", "yes"),))
    return b"echo:" + req


def upload(reqs, ctx):
    return b"".join(reqs)


def ticks(req, ctx):
    for i in range(int(req)):
        yield b"tick%d" % i


def bidi(reqs, ctx):
    for r in reqs:
        yield b"echo:" + r


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Upload": grpc.stream_unary_rpc_method_handler(upload),
        "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)
    target = sys.stdin.readline().strip()
    out = {}
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary("/test.Echo/Unary")
        resp, c = call.with_call(b"hello", timeout=10)
        out["unary"] = resp.decode()
        out["unary_trailer"] = dict(c.trailing_metadata()).get("x-trailer")
        out["upload"] = ch.stream_unary("/test.Echo/Upload")(iter([b"a", b"b", b"c" * 100000]), timeout=10).decode()[:3]
        out["ticks"] = [m.decode() for m in ch.unary_stream("/test.Echo/Ticks")(b"5", timeout=10)]
        out["bidi"] = [m.decode() for m in ch.stream_stream("/test.Echo/Bidi")(iter([b"x", b"y", b"z"]), timeout=10)]
        try:
            ch.unary_unary("/test.Echo/Fail")(b"", timeout=10)
            out["fail"] = "no error"
        except grpc.RpcError as e:
            out["fail"] = [e.code().name, e.details()]
        try:
            ch.unary_unary("/other.Svc/Call")(b"", timeout=10)
            out["unrouted"] = "no error"
        except grpc.RpcError as e:
            out["unrouted"] = [e.code().name, e.details()]
    print(json.dumps(out), flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
