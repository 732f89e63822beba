"""Raw `apply_async` from another source tree: bench/publishers.py's Publishers, of the
tree that PYTHONPATH names. bench.publishers.TreePublishers runs this file by its path:

    PYTHONPATH=var/bench/baseline python -P bench/tree_publisher.py --processes 2

`-P` keeps this file's directory off sys.path, so every import (bench.publishers, the
tree's backend and config) comes from that tree. Settings come from the environment.
It talks over its standard streams, one JSON object a line: it sends {"ready": pids};
on {"go": [warmup, seconds]} it sends {"window": [start, end]}, then {"result": ...}
(a window) or {"ids": [...]} (with --count, a filled queue).
"""

import argparse
import json
import os
import sys


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--count", type=int, default=0, help="publish this many in all, then send their ids")
    args = parser.parse_args()
    from bench.publishers import Publishers

    count_each = -(-args.count // args.processes) if args.count else 0
    publishers = Publishers("ours", dict(os.environ), args.processes, count_each=count_each)
    send({"ready": publishers.pids})
    warmup, seconds = json.loads(sys.stdin.readline())["go"]
    start, end = publishers.go(warmup, seconds)
    send({"window": [start, end]})
    if args.count:
        send({"ids": publishers.ids()})
        return
    result = publishers.result()
    send({"result": {"processes": result.processes, "seconds": result.seconds, "published": result.published,
                     "cpu_s": result.cpu_s}})


if __name__ == "__main__":
    main()
