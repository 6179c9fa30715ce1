"""Serve the MPAC reference coordinator (mpac_protocol.MPACServer) for the
cycle benchmark: one session, plain WebSocket on a loopback port.

The coordinator's code is not part of Concord: it is imported from a
checkout of the MPAC repository named by MPAC_SRC (see run.sh).

    MPAC_SRC=/path/to/mpac-protocol python3 coordinator.py PORT SESSION_ID
"""
import asyncio
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.environ["MPAC_SRC"], "mpac-package", "src"))

from mpac_protocol.server import MPACServer  # noqa: E402


async def main(port: int, session_id: str) -> None:
    # The server logs every message at INFO; the benchmark keeps WARNING,
    # as a deployment would.
    logging.basicConfig(level=logging.WARNING)
    server = MPACServer(session_id=session_id, host="127.0.0.1", port=port)
    await server.run_background()
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
