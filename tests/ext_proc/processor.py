"""External processor for tests/ext_proc.rs and tests/ext_proc_parity.rs: a grpcio
server of envoy.service.ext_proc.v3.ExternalProcessor (PyPI xds-protos).

Starts on 127.0.0.1 with an ephemeral port and prints `PORT <n>`. Each stream's
behaviour is chosen by the request's `:path` (from the request headers message; a
stream without one, request headers skipped, just continues):
  /mutate       request headers: set x-added (overwrite), x-replaced (overwrite),
                x-appended with APPEND_IF_EXISTS_OR_ADD (which Envoy's ext_proc reads
                as overwrite), x-appended-too with `append: true`, remove x-drop, and try host, x-envoy-try and :path
                (refused by the default mutation rules); response headers: set
                x-resp-added, remove x-upstream-conn (also on any path with
                `resp-mutate`)
  */upper*      request body chunks: answered with the chunk upper-cased; a path with
                `body-deny`: the second request body message is answered with an
                immediate response 403 with body `body denied`
  /clear        request body: clear_body
  /replace      request headers: CONTINUE_AND_REPLACE with the body `replaced`
  /deny         request headers: an immediate response 403, header x-denied: yes, body
                `denied by processor`
  /late-deny    response headers: an immediate response 418 with body `late`
  /hang         request headers: never answered (the stream is held until cancelled)
  /hang-body    request body: never answered
  *trailer*     trailers (either side): set x-trailer-added (`req` or `resp`), remove
                x-trailer-drop; *trailer-deny*: an immediate response 409 with body
                `trailers denied`
  /resp-*       response body, by a word in the path: `upper`, answered with the body
                upper-cased (same length); `grow`, with the body and `!` appended and
                the header x-body-seen: yes; `clear`, clear_body; `deny`, an
                immediate response 451 with body `late body`
  *close*       the second response body message is not answered: the stream ends
                there with gRPC status OK
  anything else: every message is answered CONTINUE
Every message seen is appended to the log file given as argv[1], one JSON line each:
{"path", "kind", "headers" (dict of the last value per name), "end_of_stream", "body",
"trailers" (a dict, as "headers")}.
"""
import json
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import wrappers_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

LOG = sys.argv[1]
LOCK = threading.Lock()

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def log(entry):
    with LOCK:
        with open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")


def headers_of(h):
    return headers_of_map(h.headers)


def headers_of_map(m):
    out = {}
    for v in m.headers:
        out[v.key] = v.raw_value.decode() if v.raw_value else v.value
    return out


def setter(k, v, action=OVERWRITE):
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=action
    )


def appender(k, v):
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=k, raw_value=v.encode()),
        append=wrappers_pb2.BoolValue(value=True),
    )


def hold(ctx):
    while ctx.is_active():
        time.sleep(0.02)


class Processor(pb_grpc.ExternalProcessorServicer):
    def Process(self, request_iterator, ctx):
        path = ""
        response_bodies = 0
        request_bodies = 0
        for req in request_iterator:
            kind = req.WhichOneof("request")
            entry = {"path": path, "kind": kind}
            if kind in ("request_headers", "response_headers"):
                h = getattr(req, kind)
                hs = headers_of(h)
                if kind == "request_headers":
                    path = hs.get(":path", "")
                    entry["path"] = path
                entry["headers"] = hs
                entry["end_of_stream"] = h.end_of_stream
            elif kind in ("request_body", "response_body"):
                b = getattr(req, kind)
                entry["body"] = b.body.decode(errors="replace")
                entry["end_of_stream"] = b.end_of_stream
            elif kind in ("request_trailers", "response_trailers"):
                entry["trailers"] = headers_of_map(getattr(req, kind).trailers)
            log(entry)
            if kind == "request_body":
                request_bodies += 1
            if kind == "response_body":
                response_bodies += 1
                if "close" in path and response_bodies == 2:
                    # Ends the stream cleanly (gRPC status OK) instead of answering.
                    return
            resp = answer(path, kind, req, ctx, request_bodies)
            if resp is None:
                hold(ctx)
                return
            yield resp


def answer(path, kind, req, ctx, request_bodies):
    if kind == "request_headers":
        if path.startswith("/hang") and not path.startswith("/hang-body"):
            return None
        if path.startswith("/deny"):
            return pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=403),
                    headers=pb.HeaderMutation(set_headers=[setter("x-denied", "yes")]),
                    body=b"denied by processor",
                )
            )
        common = pb.CommonResponse()
        if path.startswith("/mutate"):
            common.header_mutation.set_headers.extend(
                [
                    setter("x-added", "req"),
                    setter("x-replaced", "new"),
                    setter("x-appended", "two", APPEND),
                    appender("x-appended-too", "two"),
                    setter("host", "evil.example"),
                    setter("x-envoy-try", "1"),
                ]
            )
            common.header_mutation.remove_headers.extend(["x-drop"])
        if path.startswith("/replace"):
            common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
            common.body_mutation.body = b"replaced"
        return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=common))
    if kind == "request_body":
        if path.startswith("/hang-body"):
            return None
        if "body-deny" in path and request_bodies == 2:
            return pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=403), body=b"body denied"
                )
            )
        common = pb.CommonResponse()
        if "/upper" in path:
            common.body_mutation.body = req.request_body.body.upper()
        if path.startswith("/clear"):
            common.body_mutation.clear_body = True
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))
    if kind == "response_headers":
        if path.startswith("/late-deny"):
            return pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=418), body=b"late"
                )
            )
        common = pb.CommonResponse()
        if path.startswith("/mutate") or "resp-mutate" in path:
            common.header_mutation.set_headers.extend([setter("x-resp-added", "yes")])
            common.header_mutation.remove_headers.extend(["x-upstream-conn"])
        return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common))
    if kind == "response_body":
        body = req.response_body.body
        if "deny" in path:
            return pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=451), body=b"late body"
                )
            )
        common = pb.CommonResponse()
        if "upper" in path:
            common.body_mutation.body = body.upper()
        if "grow" in path:
            common.body_mutation.body = body + b"!"
            common.header_mutation.set_headers.extend([setter("x-body-seen", "yes")])
        if "clear" in path:
            common.body_mutation.clear_body = True
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))
    if kind in ("request_trailers", "response_trailers"):
        if "trailer-deny" in path:
            return pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=409), body=b"trailers denied"
                )
            )
        t = pb.TrailersResponse()
        if "trailer" in path:
            side = "req" if kind == "request_trailers" else "resp"
            t.header_mutation.set_headers.extend([setter("x-trailer-added", side)])
            t.header_mutation.remove_headers.extend(["x-trailer-drop"])
        if kind == "request_trailers":
            return pb.ProcessingResponse(request_trailers=t)
        return pb.ProcessingResponse(response_trailers=t)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_ExternalProcessorServicer_to_server(Processor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("PORT %d" % port, flush=True)
    # Runs until the test kills it (or its stdin closes).
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
