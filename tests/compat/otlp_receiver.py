"""A real OTLP/gRPC trace receiver for the traces test: opentelemetry-proto's TraceService.

Usage: otlp_receiver.py OUT

Listens on a free port of 127.0.0.1 (picked by the kernel, so no other process can take it
first) and appends one JSON line per span received to OUT:
{"trace_id", "span_id", "parent_id", "name", "service"} (ids in lowercase hex, "" for a root's
parent). Prints "ready PORT" once listening. Runs until killed.
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
    out = sys.argv[1]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(out), server)
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        sys.exit("cannot listen on 127.0.0.1")
    server.start()
    print(f"ready {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
