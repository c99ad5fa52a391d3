#!/usr/bin/env python3
"""Follow a Roster directory's changes with resume: the Python consumer of
docs/consumers.md.

Prints one JSON line per change and keeps the cursor of the last one in a
file, so a disconnect (or a restart of this script) continues right after
it. Stubs: `buf generate` (gen/python), or `python3 -m grpc_tools.protoc`.

    python3 consumer.py --endpoint 127.0.0.1:50051 --directory <id> \
        --cursor-file cursor [--count N] [--stubs gen/python]
"""

import argparse
import json
import os
import random
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", default="127.0.0.1:50051")
    p.add_argument("--directory", required=True)
    p.add_argument("--cursor-file", required=True)
    p.add_argument("--count", type=int, default=0, help="exit after this many changes (0: never)")
    p.add_argument("--stubs", default=os.path.join(os.path.dirname(__file__), "..", "..", "gen", "python"))
    p.add_argument("--secret", default=os.environ.get("ROSTER_INTERNAL_SECRET"))
    return p.parse_args()


def load_cursor(path):
    try:
        with open(path) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def save_cursor(path, cursor):
    """Replace the file atomically: a crash leaves the old cursor or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(cursor + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    args = parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    from google.protobuf import empty_pb2
    from roster.directory.v1 import directory_pb2 as pb
    from roster.directory.v1 import directory_pb2_grpc as rpc

    metadata = [("authorization", "Bearer " + args.secret)] if args.secret else []
    seen, delay = 0, 0.1
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                 grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED}
    while True:
        cursor = load_cursor(args.cursor_file)
        if cursor:
            request = pb.WatchChangesRequest(directory_id=args.directory, after_cursor=cursor)
            print(f"resumed after cursor {cursor}", file=sys.stderr, flush=True)
        else:
            request = pb.WatchChangesRequest(directory_id=args.directory, initial_state=empty_pb2.Empty())
        try:
            with grpc.insecure_channel(args.endpoint) as channel:
                for message in rpc.DirectoryServiceStub(channel).WatchChanges(request, metadata=metadata):
                    delay = 0.1
                    if message.HasField("change"):
                        change = message.change
                        resource = change.WhichOneof("resource")
                        line = {"cursor": message.cursor, "revision": message.revision,
                                "kind": pb.ChangeKind.Name(change.kind), "resource_id": change.resource_id,
                                "version": change.version, "synthetic": change.synthetic}
                        if resource == "user":
                            line["user_name"] = change.user.user_name
                        print(json.dumps(line), flush=True)
                        seen += 1
                    # Snapshot events carry no cursor: a snapshot resumes only whole.
                    if message.cursor:
                        save_cursor(args.cursor_file, message.cursor)
                    if args.count and seen >= args.count:
                        return 0
            error = "stream ended"
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.OUT_OF_RANGE:
                print(f"cursor out of range ({e.details()}); starting from a snapshot", file=sys.stderr, flush=True)
                if os.path.exists(args.cursor_file):
                    os.remove(args.cursor_file)
                continue
            if code not in retryable:
                print(f"watch refused: {code.name}: {e.details()}", file=sys.stderr)
                return 1
            error = f"{code.name}: {e.details()}"
        pause = random.uniform(0, delay)  # full jitter
        print(f"disconnected ({error}); retrying in {pause * 1000:.0f} ms", file=sys.stderr, flush=True)
        time.sleep(pause)
        delay = min(delay * 2, 10.0)


if __name__ == "__main__":
    sys.exit(main())
