"""moto as a process of its own, so its storage and its CPU never count against a measurement.

`python -m benchmarks.moto_server --port N` serves until its standard input closes (the runner
holds the other end, so moto also stops if the runner dies) or it receives SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from moto.server import ThreadedMotoServer

from local.moto_dynamodb import tune_moto_dynamodb


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access log line per call
    tune_moto_dynamodb()  # atomic writes as DynamoDB's are, quick answers (see the module)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        stopped.set()

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(f"moto on 127.0.0.1:{args.port}", flush=True)
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
