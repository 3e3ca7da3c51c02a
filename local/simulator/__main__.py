"""Run the simulator standalone: python -m local.simulator --port 8765 --api-key sk-local."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from .clock import ScaledClock
from .simulator import BatchSimulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI Batch API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sk-local")
    parser.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per real second"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sim = BatchSimulator(
        api_key=args.api_key,
        clock=ScaledClock(speed=args.speed),
        seed=args.seed,
        host=args.host,
        port=args.port,
    )
    with sim:
        real = {name: seconds / args.speed for name, seconds in vars(sim.timings).items()}
        print(f"OpenAI Batch API simulator on {sim.base_url} (speed x{args.speed:g})")
        print(
            f"validating {real['validating']:g}s, in_progress {real['in_progress']:g}s, "
            f"finalizing {real['finalizing']:g}s of real time; Ctrl-C to stop",
            flush=True,
        )
        stopped = threading.Event()
        # SIGTERM (e.g. `kill`) should clean up the temp dir just like Ctrl-C.
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
        print("stopping", flush=True)


if __name__ == "__main__":
    main()
