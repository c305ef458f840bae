"""Load test of the live service on loopback: N concurrent clients, each streaming one session.

    python benchmarks/load_service.py --model MODEL_DIR [--clients 16] [--posts 25] [--session-posts 400]

Starts `emoreg serve` on a free loopback port with a fresh SQLite file, runs the clients (bounded
in count and time), and prints requests/s, latency percentiles, errors and the server's memory
after the run. The baseline in the same run: the same posts sent by one client, one at a time.

With ``--session-posts N`` it then streams one session of N posts and compares the median
latency of its last 20 posts with that of its first 20 (the baseline): a post's cost must not grow
with the session's length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from emoreg.serve import free_port

TEXTS = ["Your test result was below the average.", "Ha, I was saving my energy for the real work!",
         "Sorry, that was stupid of me.", "Your questions are unfair.", "Fine, let us go on.",
         "I do not really want to talk about it."]




async def client(url: str, posts: int, latencies: list[float], errors: list[str], deadline: float) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        sid = (await c.post("/sessions", json={"context": "A job interview."})).json()["session_id"]
        for i in range(posts):
            if time.time() > deadline:
                errors.append("deadline")
                return
            started = time.perf_counter()
            r = await c.post(f"/sessions/{sid}/segments", json={
                "turns": [{"speaker": "Interviewee", "text": TEXTS[i % len(TEXTS)]}],
                "features": {"speech_rate_wps": 2.0 + i % 3}})
            latencies.append(time.perf_counter() - started)
            if r.status_code != 200:
                errors.append(f"{r.status_code}: {r.text[:100]}")


async def long_session(url: str, posts: int, limit_s: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    await client(url, posts, latencies, errors, time.time() + limit_s)
    ms = np.array(latencies) * 1000
    first, last = float(np.median(ms[:20])), float(np.median(ms[-20:]))
    return {"posts": len(latencies), "p50_first_20_ms": round(first, 1), "p50_last_20_ms": round(last, 1),
            "last_over_first": round(last / first, 2), "errors": len(errors)}


async def phase(url: str, clients: int, posts: int, limit_s: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.time() + limit_s
    started = time.perf_counter()
    await asyncio.gather(*(client(url, posts, latencies, errors, deadline) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "errors": len(errors)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--posts", type=int, default=25)
    parser.add_argument("--session-posts", type=int, default=0, help="then one session of this many posts")
    parser.add_argument("--limit-s", type=float, default=300)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-m", "emoreg", "serve", str(args.model), "--port", str(port),
                                   "--db", str(Path(tmp) / "load.sqlite")], stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            results = {
                "baseline_one_client": asyncio.run(phase(url, 1, args.posts, args.limit_s)),
                "concurrent": asyncio.run(phase(url, args.clients, args.posts, args.limit_s)),
            }
            if args.session_posts:
                results["long_session"] = asyncio.run(long_session(url, args.session_posts, args.limit_s))
            results["server_rss_mb_after"] = rss_mb(server.pid)
            results["throughput_ratio"] = round(results["concurrent"]["requests_per_s"]
                                                / results["baseline_one_client"]["requests_per_s"], 2)
            print(json.dumps(results, indent=2))
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
