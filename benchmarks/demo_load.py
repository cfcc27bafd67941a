"""The demo server under load: its latency, its answers and its peak memory when 16 clients post at once.

    python benchmarks/demo_load.py [--clients 16] [--rounds 3] [--json docs/results/demo_load.json]

Starts `python -m digits_zoo.demo` on a free loopback port (the default model, vgg_bn), reads 20
canvas drawings one after another (alone), then lets CLIENTS threads post at once, each ROUNDS times:
the costliest PNG the demo accepts (2048x2048, transparent), the costliest JPEG (7000x9000 in 0.8 MB),
then a canvas drawing (280x280, as the page sends). All start together, so the first wave is CLIENTS
worst-case pictures at once. Prints a Markdown table of the answers and latencies of each kind, and
the server's memory (VmRSS after the warm-up, VmHWM: its peak over its whole life, from /proc:
Linux only); writes the same as JSON. The pictures are tests/test_demo.py's (needs the dev extra).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.test_demo, run from anywhere

from docs.tables import demo_load_table  # noqa: E402
from tests.test_demo import SEVEN, canvas_png, worst_case_pictures  # noqa: E402


def memory_mb(pid: int, key: str) -> float:
    """VmRSS (now) or VmHWM (peak) of process `pid`, in MB."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def post(port: int, body: bytes) -> tuple[str, float]:
    """The answer's status (or the error that came instead) and the seconds it took."""
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/api/predict", body=body, headers={"content-type": "image/png"})
        response = connection.getresponse()
        response.read()
        status = str(response.status)
    except OSError as error:
        status = type(error).__name__
    finally:
        connection.close()
    return status, time.perf_counter() - start


def summary(answers: list[tuple[str, float]], size: int) -> dict:
    seconds = sorted(s for _, s in answers)
    return {
        "bytes": size,
        "requests": len(answers),
        "statuses": dict(Counter(status for status, _ in answers)),
        "p50_ms": round(1000 * statistics.median(seconds), 1),
        "p95_ms": round(1000 * statistics.quantiles(seconds, n=20, method="inclusive")[18], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The demo server under concurrent load (loopback only).")
    parser.add_argument("--clients", type=int, default=16, help="clients posting at once (default: 16)")
    parser.add_argument("--rounds", type=int, default=3, help="each client posts each kind this often (default: 3)")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "results" / "demo_load.json", help="where to write the results"
    )
    args = parser.parse_args(argv)

    worst = worst_case_pictures()
    pictures = {"worst-case PNG": worst["png"], "worst-case JPEG": worst["jpeg"], "canvas drawing": canvas_png(SEVEN)}
    server = subprocess.Popen(
        [sys.executable, "-m", "digits_zoo.demo", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(re.search(r":(\d+)/", server.stdout.readline())[1])
        alone = [post(port, pictures["canvas drawing"]) for _ in range(20)]
        before = memory_mb(server.pid, "VmRSS")
        start = threading.Barrier(args.clients)

        def client(_) -> list[tuple[str, str, float]]:
            start.wait()
            return [(kind, *post(port, pictures[kind])) for _ in range(args.rounds) for kind in pictures]

        with ThreadPoolExecutor(args.clients) as pool:
            answers = [answer for answers in pool.map(client, range(args.clients)) for answer in answers]
        peak = memory_mb(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)

    results = {
        "command": f"python benchmarks/demo_load.py --clients {args.clients} --rounds {args.rounds}",
        "clients": args.clients,
        "server_rss_mb_after_warm_up": round(before),
        "server_peak_rss_mb": round(peak),
        "kinds": {
            "canvas drawing, alone": summary(alone, len(pictures["canvas drawing"])),
            **{kind: summary([(s, t) for k, s, t in answers if k == kind], len(pictures[kind])) for kind in pictures},
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(demo_load_table(str(args.json.resolve().relative_to(ROOT))))
    print(f"wrote {args.json}; python docs/tables.py puts the table into docs/predict.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
