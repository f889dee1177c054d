"""A real OTLP/gRPC trace receiver for the traces test: opentelemetry-proto's TraceService.

Usage: otlp_receiver.py PORT OUT

Listens on 127.0.0.1:PORT and appends one JSON line per span received to OUT:
{"trace_id", "span_id", "parent_id", "name", "service"} (ids in lowercase hex, "" for a root's
parent). Prints "ready" once listening. Runs until killed.
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def service_name(resource):
    for attr in resource.attributes:
        if attr.key == "service.name":
            return attr.value.string_value
    return ""


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    def Export(self, request, context):
        lines = []
        for resource_spans in request.resource_spans:
            service = service_name(resource_spans.resource)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(
                        json.dumps(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "service": service,
                            }
                        )
                    )
        with self.lock, open(self.out, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(out), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
