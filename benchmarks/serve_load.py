"""Load benchmark of ``lite-moderation serve`` on loopback: bounded, stops by itself.

Starts the server as a subprocess on 127.0.0.1 (a free port), then 16 client threads in this process send
POST /v1/moderations: first single texts, then batches of 32 texts. Texts are responses of the BeaverTails
30k_test rows, taken by index (row i, or rows 32j..32j+31), never printed. Every answer is checked (status 200,
one result per input); anything else counts as an error. Client and server share the machine, so the numbers
are a floor for a server with the machine to itself.

    python benchmarks/serve_load.py              # 16,000 single + 4,000 batch requests, 16 clients

Writes benchmarks/results/serve.json and serve.md.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import DATA, RESULTS, machine

MACHINE_NOTE = 'client threads and server share the machine (loopback, 127.0.0.1)'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=16_000, help="Requests of one text each.")
    parser.add_argument("--batch", type=int, default=4_000, help="Requests of --batch-size texts each.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clients", type=int, default=16, help="Concurrent client threads.")
    parser.add_argument("--threads", type=int, default=8, help="Server worker threads (serve --threads).")
    parser.add_argument("--model", default="default", help="serve --model: a shipped name (default, fast) or a directory.")
    parser.add_argument("--max-seconds", type=float, default=600, help="Hard stop of each phase.")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["response"] for line in fh if line.strip()]


# ------------------------------------------------------------------------------------------------ server


class Server:
    """``lite-moderation serve`` in a subprocess; its log goes to a temp file, parsed for the port."""

    def __init__(self, threads: int, model: str) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix="serve-load-", suffix=".log")
        command = [sys.executable, "-m", "lite_moderation.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--threads", str(threads), "--model", model]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=fd)
        os.close(fd)
        self.port = self._wait_for_port()

    def _wait_for_port(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"http://127\.0\.0\.1:(\d+)", Path(self.log_path).read_text())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: see {self.log_path}")
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError("server did not start within a minute")

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code (0 = clean shutdown)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            os.unlink(self.log_path)


# ------------------------------------------------------------------------------------------------ clients


def post(port: int, body: bytes) -> tuple[int, dict | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/moderations", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if response.status == 200 else None
    finally:
        conn.close()


def run_phase(port: int, texts: list[str], n_requests: int, batch_size: int, clients: int,
              max_seconds: float) -> dict:
    """Send ``n_requests`` from ``clients`` threads; latency of each request, errors counted and sampled."""
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def body_of(i: int) -> bytes:
        if batch_size == 1:
            return json.dumps({"input": texts[i % len(texts)]}).encode()
        start = i * batch_size
        return json.dumps({"input": [texts[(start + k) % len(texts)] for k in range(batch_size)]}).encode()

    def client() -> None:
        while (i := next(counter)) < n_requests and time.monotonic() < deadline:
            body = body_of(i)
            started = time.perf_counter()
            try:
                status, answer = post(port, body)
                problem = None if status == 200 else f"HTTP {status}"
                if answer is not None and len(answer.get("results", ())) != batch_size:
                    problem = f"{len(answer.get('results', ()))} results for {batch_size} inputs"
            except Exception as exc:  # noqa: BLE001 - every failure is an error to count, not a crash
                problem = type(exc).__name__
            elapsed = time.perf_counter() - started
            with lock:
                if problem is None:
                    latencies.append(elapsed)
                else:
                    errors.append(problem)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    done = len(latencies) + len(errors)
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {
        "requests": done, "planned_requests": n_requests, "batch_size": batch_size,
        "items": len(latencies) * batch_size, "errors": len(errors), "error_samples": sorted(set(errors))[:5],
        "seconds": round(wall, 2), "requests_per_s": round(done / wall, 1),
        "items_per_s": round(len(latencies) * batch_size / wall, 1),
        "latency_ms": {q: round(float(np.percentile(ms, p)), 2) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))}
        | {"max": round(float(ms.max()), 2)},
        "stopped_by_time_cap": done < n_requests,
    }


# ------------------------------------------------------------------------------------------------ report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Serve load benchmark",
        "",
        f"`{report['command']}`",
        "",
        (f"Machine: {m['cpus']} CPU cores, {m['platform']}, Python {m['python']}; load average before the run "
         f"{m['load_average_before']}. Client ({report['clients']} threads, one process) and server "
         f"(`lite-moderation serve --threads {report['server_threads']} --model {report.get('model', 'default')}`, a subprocess) share these cores over "
         "loopback" + (", and other jobs were running (see the load average)" if m["load_average_before"][0] >= 1
                       else "") + ": a server with the machine to itself does better."),
        "",
        "| phase | requests | items | errors | requests/s | items/s | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, phase in report["phases"].items():
        lat = phase["latency_ms"]
        lines.append(f"| {name} | {phase['requests']:,} | {phase['items']:,} | {phase['errors']} | "
                     f"{phase['requests_per_s']:,} | {phase['items_per_s']:,} | {lat['p50']} | {lat['p90']} | "
                     f"{lat['p99']} | {lat['max']} |")
    lines += [
        "",
        (f"Texts: responses of BeaverTails 30k_test rows by index. Every answer was checked (HTTP 200, one result "
         f"per input). One connection per request (the built-in server speaks HTTP/1.0). Server exit code after "
         f"SIGTERM: {report['server_exit_code']}."),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    texts = read_texts(args.data)
    report = {"command": shlex.join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
              "machine": machine(MACHINE_NOTE),
              "clients": args.clients, "server_threads": args.threads, "model": args.model, "phases": {}}
    server = Server(args.threads, args.model)
    try:
        run_phase(server.port, texts, 50, 1, 2, args.max_seconds)  # warm-up, not reported
        phases = {"single text": (args.single, 1), f"batch of {args.batch_size}": (args.batch, args.batch_size)}
        for name, (n, size) in phases.items():
            print(f"{name}: {n} requests from {args.clients} clients ...", file=sys.stderr, flush=True)
            report["phases"][name] = run_phase(server.port, texts, n, size, args.clients, args.max_seconds)
            print(json.dumps(report["phases"][name]), file=sys.stderr, flush=True)
    finally:
        report["server_exit_code"] = server.stop()
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "serve.md").write_text(markdown(report))
    print(markdown(report))
    errors = sum(p["errors"] for p in report["phases"].values())
    return 0 if errors == 0 and report["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
