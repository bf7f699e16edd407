"""Load benchmark of ``lite-moderation serve`` on loopback, against main's old built-in server: bounded, stops by itself.

Every server is a subprocess on 127.0.0.1 (a free port); clients are threads (or asyncio tasks) in this process.
Scenarios, each with a fixed duration or count:

1. requests/s, 16 keep-alive clients, single texts: the old built-in server (stdlib wsgiref + thread pool, HTTP/1.0:
   a new connection per request), ``serve`` (waitress) with ``--workers 1`` and ``--workers 2``; then batches of 32.
2. slow clients: 500 connections sending headers at 1 byte/s (reconnecting when cut off) plus 2,000 idle ones,
   while a good client sends a request every 50 ms on a new connection: its success rate and p99.
3. SIGTERM under load: 16 keep-alive clients (plus 20 slow ones attached); SIGTERM after 2 s; every request whose
   bytes were fully sent must get an HTTP answer (200, or 503 once draining): a reset or an EOF counts as lost.
   Also the time from SIGTERM to exit (target: --read-timeout + 1 s).
4. the openai SDK: sync ``OpenAI`` from 16 threads, then ``AsyncOpenAI`` with 300 concurrent calls; errors and
   hidden retries (the SDK's ``x-stainless-retry-count`` header) counted.

The old built-in server is main's ``lite_moderation/server.py`` at ``--baseline`` (default 1ba1bba, the last
commit before waitress), extracted with ``git show`` into a temp dir and imported with the installed package's
other modules. Texts are responses of the BeaverTails 30k_test rows, taken by index, never printed.

    python benchmarks/serve_load.py                  # everything, about 4-5 minutes
    python benchmarks/serve_load.py --candidates     # also gunicorn gthread and uvicorn (if installed) in 1 and 2

Writes benchmarks/results/serve_load.json and serve_load.md.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import DATA, RESULTS, ROOT, machine, write_text

MACHINE_NOTE = "client threads and servers share the machine (loopback, 127.0.0.1)"
SLOW_HEAD = b"POST /v1/moderations HTTP/1.1\r\nHost: x\r\nX-Pad: "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Duration of each requests/s phase.")
    parser.add_argument("--clients", type=int, default=16, help="Concurrent keep-alive clients.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=4, help="serve --threads (waitress; its default).")
    parser.add_argument("--baseline-threads", type=int, default=8, help="The old server's --threads (its default).")
    parser.add_argument("--slow", type=int, default=500, help="Connections sending headers at 1 byte/s.")
    parser.add_argument("--idle", type=int, default=2000, help="Idle connections.")
    parser.add_argument("--slow-seconds", type=float, default=30.0, help="Duration of the slow-client phase.")
    parser.add_argument("--baseline-slow-seconds", type=float, default=10.0,
                        help="Duration of the same phase against the old server (it is offline throughout).")
    parser.add_argument("--sigterm-trials", type=int, default=3)
    parser.add_argument("--read-timeout", type=float, default=2.0, help="serve --read-timeout in the SIGTERM trials.")
    parser.add_argument("--sdk-calls", type=int, default=300, help="Concurrent AsyncOpenAI calls (and sync calls).")
    parser.add_argument("--baseline", default="1ba1bba", help="Git commit whose server.py is the old built-in server.")
    parser.add_argument("--candidates", action="store_true",
                        help="Also measure gunicorn gthread and uvicorn (WSGI) in scenarios 1 and 2, if installed.")
    parser.add_argument("--model", default="default", help="A shipped model name or a directory.")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def read_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["response"] for line in fh if line.strip()]


# ------------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def baseline_dir(commit: str) -> Path:
    """Main's old server module, importable as ``builtin_server`` (its relative imports made absolute)."""
    source = subprocess.run(["git", "show", f"{commit}:lite_moderation/server.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="serve-load-baseline-"))
    (folder / "builtin_server.py").write_text(re.sub(r"^from \.(\w+) import", r"from lite_moderation.\1 import",
                                                     source, flags=re.MULTILINE))
    return folder


def model_dir(model: str) -> str:
    if Path(model).is_dir():
        return model
    from lite_moderation.persistence import DEFAULT_MODEL_DIR
    return str(DEFAULT_MODEL_DIR.parent / model)


class Server:
    """One server subprocess; ready once its port accepts a connection and answers /healthz."""

    def __init__(self, kind: str, args: argparse.Namespace, workers: int = 1, read_timeout: float = 10.0,
                 baseline: Path | None = None) -> None:
        self.kind, self.port = kind, free_port()
        env = {**os.environ, "LITE_MODERATION_MODEL": model_dir(args.model)}
        host = ["--host", "127.0.0.1", "--port", str(self.port)]
        if kind == "ours":
            command = [sys.executable, "-m", "lite_moderation.cli", "serve", *host, "--threads", str(args.threads),
                       "--workers", str(workers), "--read-timeout", str(read_timeout), "--model", args.model]
        elif kind == "builtin":
            code = (f"import sys; sys.path.insert(0, {str(baseline)!r}); import builtin_server as s; "
                    f"s.serve({args.model!r} if {args.model!r} != 'default' else None, host='127.0.0.1', "
                    f"port={self.port}, threads={args.baseline_threads}, read_timeout={read_timeout})")
            command = [sys.executable, "-c", code]
        elif kind == "gunicorn-gthread":
            command = [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(args.threads), "-w",
                       str(workers), "-b", f"127.0.0.1:{self.port}", "--timeout", "30",
                       "lite_moderation.server:create_app()"]
        elif kind == "uvicorn-wsgi":
            command = [sys.executable, "-m", "uvicorn", "--interface", "wsgi", "--factory", "--workers", str(workers),
                       *host, "--log-level", "warning", "lite_moderation.server:create_app"]
        else:
            raise ValueError(kind)
        self.log = tempfile.NamedTemporaryFile(prefix="serve-load-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}: see {self.log.name}")
            try:
                status, _ = exchange(self.port, b"GET /healthz HTTP/1.0\r\n\r\n")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.process.kill()
        raise RuntimeError(f"{self.kind} did not start within {timeout} s")

    def stop(self, timeout: float = 60) -> tuple[int | None, float]:
        """SIGTERM; returns the exit code (None: killed after ``timeout``) and the seconds it took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        elapsed = time.monotonic() - started
        self.log.close()
        os.unlink(self.log.name)
        return code, round(elapsed, 2)


# ------------------------------------------------------------------------------------------------ a lean HTTP client


class Lost(Exception):
    """The request was fully sent, but the connection ended (reset or EOF) before a whole answer came."""


def request_bytes(body: bytes) -> bytes:
    return (f"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Connection:
    """A keep-alive HTTP/1.1 client connection on a raw socket (cheap, so the server dominates the CPU);
    reconnects when the server closes. ``send`` raises Lost only after the whole request was written."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.port, self.timeout, self.sock, self.buffer = port, timeout, None, b""

    def send(self, payload: bytes) -> tuple[int, bytes, bool]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buffer = b""
        try:
            self.sock.sendall(payload)
        except OSError:  # the server closed an idle connection before we wrote: not a sent request
            self.close()
            raise
        try:
            status, body, close = self._read_response()
        except (OSError, Lost) as exc:
            self.close()
            raise Lost(type(exc).__name__) from None
        if close:
            self.close()
        return status, body, close

    def _read_response(self) -> tuple[int, bytes, bool]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "-1"))
        close = headers.get("connection", "").lower() == "close" or lines[0].startswith("HTTP/1.0")
        if length < 0:  # no length: the body runs to the end of the connection
            while True:
                try:
                    self._fill()
                except Lost:
                    break
            body, self.buffer = self.buffer[len(head) + 4:], b""
            return int(lines[0].split()[1]), body, True
        while len(rest) < length:
            self._fill()
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return int(lines[0].split()[1]), rest[:length], close

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Lost("EOF")
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def exchange(port: int, payload: bytes, timeout: float = 5) -> tuple[int, bytes]:
    connection = Connection(port, timeout)
    try:
        status, body, _ = connection.send(payload)
        return status, body
    finally:
        connection.close()


def percentiles(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000 if seconds else np.zeros(1)
    return {q: round(float(np.percentile(ms, p)), 2) for q, p in (("p50", 50), ("p90", 90), ("p99", 99))} \
        | {"max": round(float(ms.max()), 2)}


# ------------------------------------------------------------------------------------------------ 1. requests/s


def bodies(texts: list[str], batch_size: int, count: int = 512) -> list[bytes]:
    if batch_size == 1:
        return [request_bytes(json.dumps({"input": texts[i % len(texts)]}).encode()) for i in range(count)]
    return [request_bytes(json.dumps({"input": [texts[(i * batch_size + k) % len(texts)]
                                                for k in range(batch_size)]}).encode()) for i in range(count)]


def throughput(port: int, payloads: list[bytes], batch_size: int, clients: int, seconds: float) -> dict:
    """``clients`` threads, each on its own keep-alive connection, for ``seconds``; every answer checked."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    expected = b'"flagged"'

    def client() -> None:
        connection, mine, problems = Connection(port), [], []
        while time.monotonic() < deadline:
            payload = payloads[next(counter) % len(payloads)]
            started = time.perf_counter()
            try:
                status, body, _ = connection.send(payload)
                ok = status == 200 and body.count(expected) == batch_size
                (mine.append(time.perf_counter() - started) if ok else problems.append(f"HTTP {status}"))
            except (OSError, Lost) as exc:
                problems.append(type(exc).__name__)
        connection.close()
        with lock:
            latencies.extend(mine)
            errors.extend(problems)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"requests": len(latencies) + len(errors), "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "seconds": round(wall, 2), "requests_per_s": round(len(latencies) / wall, 1),
            "items_per_s": round(len(latencies) * batch_size / wall, 1), "latency_ms": percentiles(latencies)}


# ------------------------------------------------------------------------------------------------ 2. slow clients


def slow_attack(port: int, n_slow: int, n_idle: int, stop: threading.Event, report: dict) -> None:
    """Hold ``n_idle`` idle connections and ``n_slow`` that trickle header bytes at 1 byte/s (a slow client
    cut off by the server reconnects and starts over); until ``stop``. Connects are non-blocking, as an
    attacker's would be: a server that stops accepting cannot stall this loop."""
    def connect() -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        return sock

    idle = [connect() for _ in range(n_idle)]
    slow = [connect() for _ in range(n_slow)]
    sent = [0] * n_slow
    report["slow_reconnects"] = 0
    while not stop.is_set():
        for i, sock in enumerate(slow):
            try:
                if sock.send(b"a" if sent[i] else SLOW_HEAD):
                    sent[i] += 1
                if sock.recv(65536) == b"":
                    raise ConnectionResetError
            except (BlockingIOError, InterruptedError):
                continue  # still connecting, or nothing to read: fine
            except OSError as exc:
                if getattr(exc, "errno", None) in (errno.ENOTCONN, errno.EINPROGRESS, errno.EALREADY):
                    continue
                sock.close()  # cut off by the server: start over
                slow[i], sent[i] = connect(), 0
                report["slow_reconnects"] += 1
        stop.wait(1.0)
    report["slow_bytes_sent"] = sum(sent)
    for sock in idle + slow:
        sock.close()


def slow_clients(server: Server, payload: bytes, args: argparse.Namespace, seconds: float) -> dict:
    stop, report = threading.Event(), {}
    attacker = threading.Thread(target=slow_attack, args=(server.port, args.slow, args.idle, stop, report))
    attacker.start()
    time.sleep(2.0)  # let the connections open and the trickle start
    latencies, failures = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status, body = exchange(server.port, payload, timeout=5)
            if status == 200 and b'"flagged"' in body:
                latencies.append(time.perf_counter() - started)
            else:
                failures.append(f"HTTP {status}")
        except (OSError, Lost) as exc:
            failures.append(type(exc).__name__)
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - started)))
    stop.set()
    attacker.join()
    total = len(latencies) + len(failures)
    return {"seconds": seconds, "slow_connections": args.slow, "idle_connections": args.idle, **report,
            "good_requests": total, "good_ok": len(latencies), "success_rate": round(len(latencies) / max(total, 1), 4),
            "failure_samples": sorted(set(failures))[:5], "latency_ms": percentiles(latencies)}


# ------------------------------------------------------------------------------------------------ 3. SIGTERM


def sigterm_trial(server: Server, payloads: list[bytes], clients: int, n_slow: int, read_timeout: float) -> dict:
    """Load, then SIGTERM; clients go on until their connection is refused. Counts what each sent request got."""
    counts = {"ok": 0, "503": 0, "other_status": 0, "lost": 0, "not_sent": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + 30  # a hard bound on the trial

    slow = []
    for _ in range(n_slow):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        sock.sendall(SLOW_HEAD)
        slow.append(sock)

    exited = threading.Event()

    def client(index: int) -> None:
        connection, mine = Connection(server.port, timeout=10), dict.fromkeys(counts, 0)
        while not exited.is_set() and time.monotonic() < stop_at:
            try:
                status, _, _ = connection.send(payloads[index % len(payloads)])
                mine["ok" if status == 200 else "503" if status == 503 else "other_status"] += 1
            except Lost:
                mine["lost"] += 1
            except OSError:  # refused, or closed before the request was written: nothing was lost
                mine["not_sent"] += 1
                time.sleep(0.01)
            index += clients
        connection.close()
        with lock:
            for key, value in mine.items():
                counts[key] += value

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    code, seconds = server.stop(timeout=60)
    exited.set()
    for thread in threads:
        thread.join()
    for sock in slow:
        sock.close()
    return {**counts, "exit_code": code, "seconds_to_exit": seconds, "slow_clients_attached": n_slow,
            "read_timeout": read_timeout}


# ------------------------------------------------------------------------------------------------ 4. openai SDK


def sdk_sync(port: int, texts: list[str], calls: int, threads: int) -> dict:
    import openai

    retries, lock = [0], threading.Lock()

    def count(request) -> None:
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            with lock:
                retries[0] += 1

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=30,
                           http_client=openai.DefaultHttpxClient(event_hooks={"request": [count]}))
    latencies, errors, counter = [], [], itertools.count()

    def run() -> None:
        while (i := next(counter)) < calls:
            started = time.perf_counter()
            try:
                client.moderations.create(input=texts[i % len(texts)])
                latencies.append(time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(type(exc).__name__)

    started = time.perf_counter()
    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    client.close()
    return {"calls": calls, "threads": threads, "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "retries": retries[0], "seconds": round(wall, 2), "latency_ms": percentiles(latencies)}


def sdk_async(port: int, texts: list[str], calls: int) -> dict:
    import openai

    retries = [0]

    async def count(request) -> None:
        if request.headers.get("x-stainless-retry-count", "0") != "0":
            retries[0] += 1

    async def main() -> tuple[list, float]:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=60,
                                    http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]}))

        async def one(i: int) -> float:
            started = time.perf_counter()
            await client.moderations.create(input=texts[i % len(texts)])
            return time.perf_counter() - started

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(calls)), return_exceptions=True)
        wall = time.perf_counter() - started
        await client.close()
        return results, wall

    results, wall = asyncio.run(main())
    latencies = [r for r in results if isinstance(r, float)]
    errors = [type(r).__name__ for r in results if not isinstance(r, float)]
    return {"calls": calls, "concurrent": calls, "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "retries": retries[0], "seconds": round(wall, 2), "latency_ms": percentiles(latencies)}


# ------------------------------------------------------------------------------------------------ report


def markdown(report: dict) -> str:
    m, r = report["machine"], report
    lines = [
        "# Serve load benchmark", "", f"`{r['command']}`", "",
        (f"Machine: {m['cpus']} CPU cores, {m['platform']}, Python {m['python']}; load average before the run "
         f"{m['load_average_before']}. Clients (threads in one process) and servers (subprocesses, the shipped "
         f"`{r['model']}` model) share these cores over loopback; \"built-in\" is main's old server (`git show "
         f"{r['baseline']}:lite_moderation/server.py`, `--threads {r['baseline_threads']}`), \"waitress\" is "
         f"`serve` now (`--threads {r['threads']}`)."),
        "", f"## Requests/s: {r['clients']} keep-alive clients, {r['seconds']} s each", "",
        "| server | request | requests | errors | requests/s | items/s | p50 ms | p99 ms | vs built-in |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = r["throughput"]["built-in, single text"]["requests_per_s"]
    for name, phase in r["throughput"].items():
        server, request = name.split(", ")
        lat = phase["latency_ms"]
        ratio = f"{phase['requests_per_s'] / base:.2f}x" if request == "single text" and base else ""
        lines.append(f"| {server} | {request} | {phase['requests']:,} | {phase['errors']} | "
                     f"{phase['requests_per_s']:,} | {phase['items_per_s']:,} | {lat['p50']} | {lat['p99']} | {ratio} |")
    w1 = r["throughput"].get("waitress --workers 1, single text", {}).get("requests_per_s")
    w2 = r["throughput"].get("waitress --workers 2, single text", {}).get("requests_per_s")
    if w1 and w2:
        lines += ["", f"`--workers 2` / `--workers 1`: {w2 / w1:.2f}x (clients share the same 2 cores)."]
    lines += ["", (f"## Slow clients: {r['slow_args']['slow']} sending headers at 1 byte/s + {r['slow_args']['idle']} "
              "idle connections; a good client, a new connection every 50 ms"), "",
              "| server | seconds | slow reconnects (cut off) | good requests | success | p50 ms | p99 ms | max ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, phase in r["slow_clients"].items():
        lat = phase["latency_ms"]
        lines.append(f"| {name} | {phase['seconds']} | {phase.get('slow_reconnects', 0)} | {phase['good_requests']} | "
                     f"{phase['success_rate']:.2%} | "
                     f"{lat['p50']} | {lat['p99']} | {lat['max']} |")
    lines += ["", f"## SIGTERM under {r['clients']}-client keep-alive load (SIGTERM after 2 s)", "",
              ("| server | trial | slow clients | 200 | 503 | lost (reset/EOF after sending) | refused | exit code | "
              "seconds to exit | read timeout |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, trials in r["sigterm"].items():
        for i, t in enumerate(trials, 1):
            lines.append(f"| {name} | {i} | {t['slow_clients_attached']} | {t['ok']:,} | {t['503']} | {t['lost']} | "
                         f"{t['not_sent']} | {t['exit_code']} | {t['seconds_to_exit']} | {t['read_timeout']} |")
    lines += ["", "## The openai SDK (default `max_retries=2`; retries counted from `x-stainless-retry-count`)", "",
              "| server | client | calls | errors | retries | seconds | p50 ms | p99 ms |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, phases in r["sdk"].items():
        for client, p in phases.items():
            lines.append(f"| {name} | {client} | {p['calls']} | {p['errors']} | {p['retries']} | {p['seconds']} | "
                         f"{p['latency_ms']['p50']} | {p['latency_ms']['p99']} |")
    lines += ["", ("Texts: responses of BeaverTails 30k_test rows by index. Every answer was checked (HTTP 200 and one "
              "result per input).")]
    return "\n".join(lines) + "\n"


def raise_file_limit() -> None:
    """Thousands of client sockets: lift the soft limit on open files to the hard one."""
    import resource
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    args = parse_args()
    raise_file_limit()
    texts = read_texts(args.data)
    baseline = baseline_dir(args.baseline)
    report = {"command": shlex.join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
              "machine": machine(MACHINE_NOTE), "clients": args.clients, "threads": args.threads,
              "baseline_threads": args.baseline_threads,
              "model": args.model, "seconds": args.seconds, "baseline": args.baseline,
              "slow_args": {"slow": args.slow, "idle": args.idle},
              "throughput": {}, "slow_clients": {}, "sigterm": {}, "sdk": {}}
    single, batch = bodies(texts, 1), bodies(texts, args.batch_size)

    def log(name: str, result: dict) -> None:
        print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)

    servers = [("built-in", "builtin", 1), ("waitress --workers 1", "ours", 1), ("waitress --workers 2", "ours", 2)]
    if args.candidates:
        servers += [(f"{kind} -w {w}", kind, w) for kind, module in (("gunicorn-gthread", "gunicorn"),
                                                                      ("uvicorn-wsgi", "uvicorn"))
                    if shutil.which(module) or _importable(module) for w in (1, 2)]
    try:
        for name, kind, workers in servers:  # 1. requests/s
            server = Server(kind, args, workers=workers, baseline=baseline)
            try:
                throughput(server.port, single, 1, 2, 1.0)  # warm-up, not reported
                key = f"{name}, single text"
                report["throughput"][key] = throughput(server.port, single, 1, args.clients, args.seconds)
                log(key, report["throughput"][key])
                if kind == "ours" and workers == 1:
                    key = f"{name}, batch of {args.batch_size}"
                    report["throughput"][key] = throughput(server.port, batch, args.batch_size, args.clients,
                                                           args.seconds / 2)
                    log(key, report["throughput"][key])
            finally:
                server.stop()

        slow_servers = [("waitress", "ours", args.slow_seconds), ("built-in", "builtin", args.baseline_slow_seconds)]
        if args.candidates:
            slow_servers += [(kind, kind, args.baseline_slow_seconds) for kind in ("gunicorn-gthread", "uvicorn-wsgi")
                             if _importable(kind.split("-")[0])]
        for name, kind, seconds in slow_servers:  # 2. slow clients
            server = Server(kind, args, baseline=baseline)
            try:
                report["slow_clients"][name] = slow_clients(server, single[0], args, seconds)
                log(f"slow clients, {name}", report["slow_clients"][name])
            finally:
                report["slow_clients"][name]["exit"] = server.stop(timeout=90)

        for name, kind, trials, n_slow in (("waitress", "ours", args.sigterm_trials, 20), ("built-in", "builtin", 2, 0)):
            report["sigterm"][name] = []  # 3. SIGTERM
            for _ in range(trials):
                server = Server(kind, args, read_timeout=args.read_timeout, baseline=baseline)
                report["sigterm"][name].append(sigterm_trial(server, single, args.clients, n_slow, args.read_timeout))
                log(f"sigterm, {name}", report["sigterm"][name][-1])

        for name, kind in (("waitress", "ours"), ("built-in", "builtin")):  # 4. the openai SDK
            server = Server(kind, args, baseline=baseline)
            try:
                report["sdk"][name] = {"OpenAI, 16 threads": sdk_sync(server.port, texts, args.sdk_calls, 16),
                                       f"AsyncOpenAI, {args.sdk_calls} concurrent": sdk_async(server.port, texts,
                                                                                               args.sdk_calls)}
                log(f"sdk, {name}", report["sdk"][name])
            finally:
                server.stop()
    finally:
        shutil.rmtree(baseline, ignore_errors=True)
    args.output.mkdir(parents=True, exist_ok=True)
    write_text(args.output / "serve_load.json", json.dumps(report, indent=2) + "\n")
    write_text(args.output / "serve_load.md", markdown(report))
    print(markdown(report))
    return 0


def _importable(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
