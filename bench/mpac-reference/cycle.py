"""Drive the MPAC reference coordinator through the cycle that
`concord bench --scenario mpac` runs against Concord: AGENTS agents join
one session (HELLO), each on its own WebSocket, and each repeats
INTENT_ANNOUNCE -> OP_COMMIT -> INTENT_WITHDRAW on its own path for
DURATION seconds. The coordinator relays every accepted step to every
agent; an agent takes its own step coming back as the acknowledgement
(the reference answers accepted steps with no other reply) and a
PROTOCOL_ERROR naming the step as its rejection.

    python3 cycle.py URL SESSION_ID AGENTS DURATION COORDINATOR_PID [--json]

Prints cycles/s, step latency and the coordinator's CPU (from /proc).
"""
import asyncio
import itertools
import json
import math
import os
import sys
import time
import uuid

import websockets

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
lamport = itertools.count(1)  # one Lamport clock for every agent here


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return -1


def quantile(sorted_values, p):
    """Nearest-rank quantile, as concord bench computes it."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Agent:
    def __init__(self, url: str, session_id: str, name: str):
        self.url, self.session_id, self.name = url, session_id, name
        self.principal = f"agent:{name}"
        self.instance = str(uuid.uuid4())
        self.pending = {}  # message id -> future of its echo or error
        self.path = f"{name}/work"
        self.state_ref = "sha256:0"

    def envelope(self, message_type: str, payload: dict) -> dict:
        return {
            "protocol": "MPAC",
            "version": "0.1.13",
            "message_type": message_type,
            "message_id": str(uuid.uuid4()),
            "session_id": self.session_id,
            "sender": {"principal_id": self.principal, "principal_type": "agent",
                       "sender_instance_id": self.instance},
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "payload": payload,
            "watermark": {"kind": "lamport_clock", "value": next(lamport)},
        }

    async def connect(self):
        self.ws = await websockets.connect(self.url, max_size=None, ping_interval=None)
        self.reader = asyncio.create_task(self.read())
        hello = self.envelope("HELLO", {"display_name": self.name, "roles": ["contributor"], "capabilities": []})
        await self.ws.send(json.dumps(hello))
        await self.wait_for("SESSION_INFO")

    async def wait_for(self, message_type: str):
        fut = asyncio.get_running_loop().create_future()
        self.pending[message_type] = fut
        await asyncio.wait_for(fut, 30)

    async def read(self):
        async for raw in self.ws:
            # Only this agent's own steps and errors matter: find them
            # without decoding the other agents' relayed steps.
            for key, fut in list(self.pending.items()):
                if key in raw and not fut.done():
                    msg = json.loads(raw)
                    if msg.get("message_type") == "PROTOCOL_ERROR":
                        fut.set_exception(RuntimeError(f"{self.name}: {msg['payload']}"))
                    elif msg.get("message_id") == key or msg.get("message_type") == key:
                        fut.set_result(msg)
                    else:
                        continue
                    del self.pending[key]

    async def step(self, message_type: str, payload: dict, latencies: list):
        env = self.envelope(message_type, payload)
        fut = asyncio.get_running_loop().create_future()
        self.pending[env["message_id"]] = fut
        began = time.perf_counter()
        await self.ws.send(json.dumps(env))
        await asyncio.wait_for(fut, 30)
        latencies.append(time.perf_counter() - began)

    async def cycle(self, n: int, latencies: list):
        intent = f"{self.name}-{n}"
        await self.step("INTENT_ANNOUNCE", {"intent_id": intent, "objective": "bench",
                                            "scope": {"kind": "file_set", "resources": [self.path]}}, latencies)
        after = f"sha256:{self.name}-{n}"
        await self.step("OP_COMMIT", {"op_id": f"op-{intent}", "intent_id": intent, "target": self.path,
                                      "op_kind": "replace", "state_ref_before": self.state_ref,
                                      "state_ref_after": after}, latencies)
        self.state_ref = after
        await self.step("INTENT_WITHDRAW", {"intent_id": intent, "reason": "done"}, latencies)


async def main(url: str, session_id: str, agents: int, duration: float, pid: int, as_json: bool):
    crowd = [Agent(url, session_id, f"agent-{i}") for i in range(agents)]
    for a in crowd:
        await a.connect()
    warm = []
    await asyncio.gather(*(a.cycle(0, warm) for a in crowd))  # untimed, as in concord bench

    latencies, cycles = [], [0]
    deadline = time.perf_counter() + duration

    async def run(a: Agent):
        n = 1
        while time.perf_counter() < deadline:
            await a.cycle(n, latencies)
            cycles[0] += 1
            n += 1

    cpu0, self0, t0 = cpu_seconds(pid), cpu_seconds(os.getpid()), time.perf_counter()
    await asyncio.gather(*(run(a) for a in crowd))
    elapsed = time.perf_counter() - t0
    cpu1, self1 = cpu_seconds(pid), cpu_seconds(os.getpid())
    latencies.sort()
    result = {
        "agents": agents, "seconds": elapsed, "cycles": cycles[0],
        "cycles_per_sec": cycles[0] / elapsed, "steps_per_sec": 3 * cycles[0] / elapsed,
        "step_p50_ms": quantile(latencies, 0.5) * 1e3, "step_p99_ms": quantile(latencies, 0.99) * 1e3,
        "step_p999_ms": quantile(latencies, 0.999) * 1e3,
        "coordinator_cores": (cpu1 - cpu0) / elapsed, "coordinator_rss_bytes": rss_bytes(pid),
        "client_cores": (self1 - self0) / elapsed,
    }
    for a in crowd:
        await a.ws.close()
    if as_json:
        print(json.dumps(result))
    else:
        print(f"MPAC reference coordinator, {agents} agents on one session: {result['cycles_per_sec']:.0f} cycles/s "
              f"({result['steps_per_sec']:.0f} steps/s, none durable) over {elapsed:.1f} s; "
              f"step p50 {result['step_p50_ms']:.2f} ms p99 {result['step_p99_ms']:.2f} ms p99.9 {result['step_p999_ms']:.2f} ms; "
              f"coordinator {result['coordinator_cores']:.2f} cores, {result['coordinator_rss_bytes'] / 2**20:.1f} MiB RSS; "
              f"this client {result['client_cores']:.2f} cores")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(args[0], args[1], int(args[2]), float(args[3]), int(args[4]), "--json" in args))
