"""Tests for the HTTP engine under ``serve`` (waitress plus lite_moderation.server's layer around it).

Real servers on 127.0.0.1: in-process ones (a thread each) for the HTTP layer, and ``lite-moderation serve``
subprocesses for signals, the drain and ``--workers``. Every loop is bounded; no test measures speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import raw_exchange

GUARD = 30  # seconds: a socket guard so a broken server fails the test instead of hanging it
BODY = json.dumps({"input": "The weather is lovely today."}).encode()


def request_bytes(body: bytes = BODY, path: str = "/v1/moderations", extra: str = "", close: bool = True) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + extra + "\r\n").encode() + body


def parse(reply: bytes) -> tuple[int, dict[str, str], object]:
    """Status, headers (lower-case names) and JSON body of one raw HTTP/1.x response."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, json.loads(body[: int(headers["content-length"])])


def assert_json_error(reply: bytes, status: int, fragment: str) -> dict[str, str]:
    got, headers, answer = parse(reply)
    assert got == status, reply[:300]
    assert headers["content-type"] == "application/json"
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert fragment in answer["error"]["message"], answer
    assert headers["server"] == "lite-moderation"  # no engine or Python version
    return headers


# ------------------------------------------------------------------------------------------------ HTTP layer


HTTP_LAYER_ERRORS = {
    "content-length-plus": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +13\r\n\r\n", 400,
                            "Content-Length is invalid"),
    "content-length-underscore": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1_3\r\n\r\n", 400,
                                  "Content-Length is invalid"),
    "content-length-twice": ((b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 13\r\n"
                              b"Content-Length: 14\r\n\r\n"), 400, "Content-Length is invalid"),
    "content-length-words": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: lots\r\n\r\n", 400,
                             "Content-Length is invalid"),
    "garbage": (b"\x00\xff garbage that is not HTTP\r\n\r\n", 400, "malformed HTTP request"),
    "headers-too-large": (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 300_000 + b"\r\n\r\n", 431,
                          "request headers are larger than the limit"),
    "body-too-large": (request_bytes(b"x" * 1_000_001), 413, "request body is 1000001 bytes; the limit is 1000000"),
    "unknown-transfer-encoding": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                                  501, "not implemented"),
    "no-content-length": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 411,
                          "Content-Length header"),
    "integer-of-5001-digits": (request_bytes(b'{"input": "a", "n": ' + b"7" * 5001 + b"}"), 400,
                               "Exceeds the limit (4300 digits)"),
}


@pytest.mark.parametrize("name", list(HTTP_LAYER_ERRORS))
def test_http_layer_errors_are_openai_json(port, name):
    payload, status, fragment = HTTP_LAYER_ERRORS[name]
    assert_json_error(raw_exchange(port, payload), status, fragment)


def test_the_server_stays_up_after_every_http_layer_error(port):
    for payload, _, _ in HTTP_LAYER_ERRORS.values():
        raw_exchange(port, payload)
    status, _, answer = parse(raw_exchange(port, request_bytes()))
    assert status == 200 and len(answer["results"]) == 1


def test_keep_alive_pipelining_and_expect_continue(port):
    """Three requests on one connection, the second pipelined behind the first, the third with Expect."""
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD) as sock:
        sock.sendall(request_bytes(close=False) * 2 + request_bytes(extra="Expect: 100-continue\r\n"))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert reply.count(b"HTTP/1.1 100 Continue") <= 1


def test_http_1_0_and_0_9_requests_get_answers(port):
    assert parse(raw_exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n"))[0] == 200
    assert parse(raw_exchange(port, b"GET /healthz\r\n\r\n"))[0] == 200


def test_chunked_body_is_accepted(port):
    chunked = (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n")
    status, _, answer = parse(raw_exchange(port, chunked))
    assert status == 200 and len(answer["results"]) == 1


# ------------------------------------------------------------------------------------------------ slow clients


def test_slow_header_clients_and_idle_connections_do_not_block_a_good_client(start):
    """60 clients sending headers a byte at a time plus 300 idle connections against ONE worker thread:
    a good client is served throughout, and a slow client is answered 408 at the whole-request deadline."""
    server = start(threads=1, read_timeout=1.5)
    p = server.server_port
    idle = [socket.create_connection(("127.0.0.1", p), timeout=GUARD) for _ in range(300)]
    slow = [socket.create_connection(("127.0.0.1", p), timeout=GUARD) for _ in range(60)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        served, answer_to_first = 0, b""
        for _ in range(10):  # about a second of trickling
            for sock in slow[1:] if answer_to_first else slow:  # once answered, sending more would earn a reset
                try:
                    sock.send(b"a")
                except OSError:
                    pass
            status, _, answer = parse(raw_exchange(p, request_bytes()))
            served += status == 200 and len(answer["results"]) == 1
            time.sleep(0.1)
            slow[0].setblocking(False)
            try:
                answer_to_first += slow[0].recv(65536)
            except BlockingIOError:
                pass
        assert served == 10
        slow[0].settimeout(GUARD)
        answer_to_first += b"".join(iter(lambda: slow[0].recv(65536), b""))
        assert_json_error(answer_to_first, 408, "timed out reading the request")
    finally:
        for sock in idle + slow:
            sock.close()


def test_trickled_body_gets_408_with_what_was_received(start):
    server = start(threads=1, read_timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=GUARD) as sock:
        sock.sendall(request_bytes()[:-5])
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    assert_json_error(reply, 408, f"({len(BODY) - 5} of {len(BODY)} body bytes received)")


# ------------------------------------------------------------------------------------------------ processes


class Serve:
    """``lite-moderation serve`` as a subprocess, stderr to a file (read at the end)."""

    def __init__(self, tmp_path, *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.log = tmp_path / f"serve-{time.monotonic_ns()}.log"
        with open(self.log, "w") as fh:
            self.process = subprocess.Popen([*prefix, sys.executable, "-m", "lite_moderation.cli", "serve", "--port",
                                             "0", *args], stdout=subprocess.DEVNULL, stderr=fh)
        deadline = time.monotonic() + 60
        while "serving " not in (text := self.log.read_text()):
            assert self.process.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.05)
        self.port = int(text.split("http://127.0.0.1:")[1].split()[0])

    def stop(self, signum: int = signal.SIGTERM, timeout: float = GUARD) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def running(pid: int) -> bool:
    """The process exists and is not a zombie waiting for a parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found |= {int(child) for child in fh.read().split()}
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads children from /proc (Linux)")
def test_workers_2_serve_and_all_stop_on_sigterm(tmp_path):
    server = Serve(tmp_path, "--workers", "2", "--threads", "2")
    try:
        workers = children_of(server.process.pid)
        assert len(workers) == 2
        for _ in range(20):
            status, _, answer = parse(raw_exchange(server.port, request_bytes()))
            assert status == 200 and len(answer["results"]) == 1
    finally:
        code = server.stop()
    assert code == 0
    assert not any(running(pid) for pid in workers)
    log = server.log.read_text()
    assert "workers=2" in log and "Traceback" not in log


def test_sigterm_answers_every_request_already_sent_including_the_listen_queue(tmp_path):
    """The server is paused (SIGSTOP) while 40 clients connect and send whole requests: they sit in the kernel's
    listen queue, unaccepted. SIGTERM, then SIGCONT: each must get an HTTP answer (200 or a JSON 503 with
    Connection: close), none a reset; a slow client attached does not keep the process alive past the drain."""
    read_timeout = 2.0
    server = Serve(tmp_path, "--threads", "2", "--read-timeout", str(read_timeout))
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=GUARD)
    slow.sendall(b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: a")
    time.sleep(0.2)
    os.kill(server.process.pid, signal.SIGSTOP)
    queued = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=GUARD)
            sock.sendall(request_bytes())
            queued.append(sock)
        server.process.send_signal(signal.SIGTERM)
        os.kill(server.process.pid, signal.SIGCONT)
        statuses = []
        for sock in queued:
            reply = b"".join(iter(lambda sock=sock: sock.recv(65536), b""))  # a reset raises here
            status, headers, answer = parse(reply)
            statuses.append(status)
            if status == 503:
                assert headers["connection"] == "close" and answer["error"]["code"] == "shutting_down"
        assert set(statuses) <= {200, 503} and len(statuses) == 40
        code = server.process.wait(timeout=read_timeout + 5)
    finally:
        for sock in [*queued, slow]:
            sock.close()
        if server.process.poll() is None:
            server.process.kill()  # also ends a SIGSTOP
            server.process.wait()
    assert code == 0
    assert "draining" in server.log.read_text()


def test_connections_are_refused_not_reset_after_the_drain(tmp_path):
    server = Serve(tmp_path, "--read-timeout", "1")
    assert server.stop() == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=GUARD)


# ------------------------------------------------------------------------------------------------ openai SDK


def test_openai_sdk_sync_and_300_concurrent_async_calls_without_retries(port):
    from openai import AsyncOpenAI, OpenAI

    base = f"http://127.0.0.1:{port}/v1"
    with OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=GUARD) as client:
        for i in range(20):  # one keep-alive connection, reused
            assert len(client.moderations.create(input=f"a made-up sentence {i}").results) == 1

    async def many() -> list:
        async with AsyncOpenAI(base_url=base, api_key="unused", max_retries=0, timeout=GUARD) as client:
            calls = [client.moderations.create(input=f"a made-up sentence {i}") for i in range(300)]
            return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(many())
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, errors[:3]
    assert all(len(a.results) == 1 for a in answers)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads children from /proc (Linux)")
def test_workers_stop_when_the_supervisor_is_killed(tmp_path):
    server = Serve(tmp_path, "--workers", "2", "--threads", "1", "--read-timeout", "1")
    workers = children_of(server.process.pid)
    assert len(workers) == 2
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + GUARD
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in workers if running(pid)]
    for pid in alive:  # leave nothing behind, then fail
        os.kill(pid, signal.SIGKILL)
    assert not alive


# ------------------------------------------------------------------------------------------------ hostile input (#22)


def _one_response_then_close(port: int, payload: bytes) -> bytes:
    """The reply to ``payload``; the server must close the connection (a kept one fails the test in 5 s)."""
    return raw_exchange(port, payload, read_timeout=5)


SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # what a proxy would see as the next request
CHUNKED_BODY = f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n"
AMBIGUOUS_FRAMING = {
    "transfer-encoding-and-content-length": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4"
                                             b"\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_BODY + SMUGGLED),
    "content-length-then-transfer-encoding": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
                                              b"chunked\r\nContent-Length: 0\r\n\r\n" + CHUNKED_BODY + SMUGGLED),
    "chunked-twice-in-one-field": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, "
                                   b"chunked\r\n\r\n" + CHUNKED_BODY + SMUGGLED),
    "chunked-in-two-fields": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                              b"transfer-encoding: CHUNKED\r\n\r\n" + CHUNKED_BODY + SMUGGLED),
    "transfer-encoding-in-http-1.0": (b"POST /v1/moderations HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n"
                                      b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(BODY) + BODY
                                      + SMUGGLED),
    "empty-transfer-encoding": (b"POST /v1/moderations HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: \r\n\r\n"
                                + SMUGGLED),
}


@pytest.mark.parametrize("name", list(AMBIGUOUS_FRAMING))
def test_ambiguous_body_length_is_refused_and_the_connection_closed(port, name):
    """RFC 9112 section 6.3: a proxy in front may read such a body's length otherwise and forward the rest as a
    request of its own; the server answers 400 once, closes, and never answers what followed."""
    reply = _one_response_then_close(port, AMBIGUOUS_FRAMING[name])
    headers = assert_json_error(reply, 400, "malformed HTTP request")
    assert headers["connection"] == "close"
    assert len(re.findall(rb"(?:^|\n)HTTP/1\.[01] [0-9]{3} ", reply)) == 1, reply  # one status line: one answer
    assert parse(raw_exchange(port, request_bytes()))[0] == 200  # and keeps serving


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads children from /proc (Linux)")
def test_workers_dying_right_after_start_stop_the_server_with_a_failure_code(tmp_path):
    """A worker killed, then its replacement killed within its first second: a crash loop. The supervisor
    stops every worker and exits 3 (non-zero: a service manager's restart-on-failure starts it again)."""
    server = Serve(tmp_path, "--workers", "2", "--threads", "1", "--read-timeout", "1")
    try:
        workers = children_of(server.process.pid)
        time.sleep(1.2)  # past their first second: a worker dying now is replaced
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + GUARD
        while not (replacements := children_of(server.process.pid) - workers) and time.monotonic() < deadline \
                and server.process.poll() is None:
            time.sleep(0.01)
        assert replacements, "the killed worker was not replaced"
        for pid in replacements:
            os.kill(pid, signal.SIGKILL)
        code = server.process.wait(timeout=GUARD)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    log = server.log.read_text()
    assert code == 3, log
    assert "died within a second of starting" in log and "Traceback" not in log
    assert not any(running(pid) for pid in workers | replacements)


def test_sighup_drains_like_sigterm(tmp_path):
    """A closed terminal sends SIGHUP: every request already sent (here, held in the listen queue while the
    server is paused) gets a whole HTTP answer, then the server exits 0. Started as from a terminal (SIGHUP at its
    default): under ``nohup`` the test run's own SIGHUP is ignored, and a server must keep that (next test)."""
    from_terminal = ("import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_DFL); "
                     "os.execv(sys.argv[1], sys.argv[1:])")
    server = Serve(tmp_path, "--threads", "2", "--read-timeout", "2", prefix=(sys.executable, "-c", from_terminal))
    os.kill(server.process.pid, signal.SIGSTOP)
    queued = []
    try:
        for _ in range(10):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=GUARD)
            sock.sendall(request_bytes())
            queued.append(sock)
        server.process.send_signal(signal.SIGHUP)
        os.kill(server.process.pid, signal.SIGCONT)
        statuses = [parse(b"".join(iter(lambda sock=sock: sock.recv(65536), b"")))[0] for sock in queued]
        code = server.process.wait(timeout=GUARD)
    finally:
        for sock in queued:
            sock.close()
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
    assert set(statuses) <= {200, 503} and len(statuses) == 10
    assert code == 0
    assert "draining" in server.log.read_text()


def test_sighup_ignored_on_purpose_keeps_serving(tmp_path):
    """Under ``nohup`` SIGHUP is ignored before the server starts: it must stay so."""
    keep_ignored = ("import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                    "os.execv(sys.argv[1], sys.argv[1:])")
    server = Serve(tmp_path, "--threads", "1", "--read-timeout", "1", prefix=(sys.executable, "-c", keep_ignored))
    try:
        server.process.send_signal(signal.SIGHUP)
        assert parse(raw_exchange(server.port, request_bytes()))[0] == 200
        assert server.process.poll() is None
    finally:
        code = server.stop()
    assert code == 0
