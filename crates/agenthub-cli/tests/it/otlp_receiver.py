"""An OTLP/HTTP trace receiver on loopback, for the tracing tests and benches/history.py.

Run as a program it prints one line, {"endpoint": "http://127.0.0.1:PORT"}, then answers
each line read on stdin ("dump") with one JSON line: the spans received so far. It exits at
the end of stdin. Bodies are protobuf (`ExportTraceServiceRequest`), gzip or not.
"""
import gzip
import json
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _any(value):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any(x) for x in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


class Receiver:
    def __init__(self):
        self.spans = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code, body=b"", ctype="application/x-protobuf"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?")[0] != "/v1/traces":
                    return self._reply(404, b"", "text/plain")
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                try:
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                except Exception as e:  # a bad body is the sender's bug: say so
                    return self._reply(400, str(e).encode(), "text/plain")
                with receiver.lock:
                    receiver.requests += 1
                    for rs in request.resource_spans:
                        resource = {kv.key: _any(kv.value) for kv in rs.resource.attributes}
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                receiver.spans.append({
                                    "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(),
                                    "parent_span_id": span.parent_span_id.hex(),
                                    "name": span.name,
                                    "kind": span.kind,
                                    "status": span.status.code,
                                    "status_message": span.status.message,
                                    "attributes": {kv.key: _any(kv.value) for kv in span.attributes},
                                    "resource": resource,
                                    "scope": ss.scope.name,
                                })
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self):
        with self.lock:
            return list(self.spans)


def start():
    return Receiver()


if __name__ == "__main__":
    receiver = start()
    print(json.dumps({"endpoint": receiver.endpoint}), flush=True)
    for _ in sys.stdin:
        print(json.dumps(receiver.received()), flush=True)
