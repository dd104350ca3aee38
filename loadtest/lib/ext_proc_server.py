"""The external processor of the ext-proc scenario: a grpcio server of
envoy.service.ext_proc.v3.ExternalProcessor that answers every message CONTINUE
with no mutation (the scenario sends the request headers only).

Run as a script with loadtest/.venv's python (grpcio, xds-protos):
`python ext_proc_server.py PORT`, pinned by the harness to the client CPUs.
"""

from __future__ import annotations

import sys
from concurrent import futures

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

CONTINUE = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    "request_trailers": pb.ProcessingResponse(request_trailers=pb.TrailersResponse()),
    "response_trailers": pb.ProcessingResponse(response_trailers=pb.TrailersResponse()),
}


class Processor(pb_grpc.ExternalProcessorServicer):
    def Process(self, request_iterator, ctx):
        for req in request_iterator:
            yield CONTINUE[req.WhichOneof("request")]


def main() -> None:
    # One thread per concurrent stream: the scenario's 32 connections, with room.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    pb_grpc.add_ExternalProcessorServicer_to_server(Processor(), server)
    server.add_insecure_port(f"127.0.0.1:{int(sys.argv[1])}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
