"""Before/after numbers of the denial-of-service classes of issue 22, through a real ``lite-moderation serve``.

Each server is a subprocess on 127.0.0.1 (``python -m lite_moderation.cli serve --port 0``, a fresh one per
scenario, its RSS read from /proc). "before" runs the code of ``--baseline`` (default c08a692, the commit before
the fixes), extracted with ``git archive`` into a temp dir; "after" runs this tree. Bounded: fixed request counts
and a timeout per request. Scenarios:

1. hash flooding: one request of 16 texts of 8-letter words (``--flood-bytes``), crafted so that their homes in
   the word table collide under the old fixed hash (what anyone can compute offline), against random words; the
   first request and a repeat. Then, in this process (this tree), the new table's worst case: words crafted
   against its own secret key, as if it had leaked: seconds and probes counted.
2. amplification: /v1/explain of 990,000 characters of text (default labels): status, answer bytes, server RSS; after the fix
   also the largest answer it allows (99,000 characters, every label).
3. memory: server RSS after each of ``--big-words`` requests of one 990,000-character word.
4. slow-path cliff: a single text of 25,000 words, then the same text with one word changed (5 times), against
   the same words in 16 texts.

    PYTHONPATH=. python benchmarks/server_dos.py      # about 6 minutes

Writes benchmarks/results/server_dos.json and server_dos.md. Texts are random letters and harmless words.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, machine, write_text

OLD_MULTIPLIER = 0x9E3779B97F4A7C15  # the fixed hash of the word table before the fix
TIMEOUT = 900
WORDS = ["garden", "river", "kitchen", "music", "travel", "planet", "museum", "library", "bicycle", "weather",
         "the", "a", "of", "and", "is", "with", "quiet", "morning", "bread", "window"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="c08a692", help="The commit whose code is measured as 'before'.")
    parser.add_argument("--flood-bytes", type=int, default=450_000, help="Bytes of 8-letter words in the flood.")
    parser.add_argument("--big-words", type=int, default=30, help="Requests of one 990,000-character word each.")
    return parser.parse_args()


# ------------------------------------------------------------------------------------------------ servers


class Server:
    """``lite-moderation serve`` of the code at ``code`` (a directory put first on PYTHONPATH)."""

    def __init__(self, code: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(code)}
        command = [sys.executable, "-m", "lite_moderation.cli", "serve", "--port", "0", "--read-timeout", "60"]
        # cwd: ``python -m`` puts the current directory first on sys.path, before PYTHONPATH
        self.process = subprocess.Popen(command, env=env, cwd=code, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if "serving " in line:
                self.port = int(line.split("http://127.0.0.1:")[1].split()[0])
                break
            if not line and self.process.poll() is not None:
                raise RuntimeError("the server exited before serving")
        else:
            raise RuntimeError("the server did not start within 120 s")
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # drain the request log

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def post(self, path: str, body: dict) -> tuple[int, int, float]:
        """Status, answer bytes and seconds of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            size = len(reply.read())
            return reply.status, size, time.perf_counter() - started
        finally:
            conn.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def baseline_code(commit: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "lite_moderation"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


# ------------------------------------------------------------------------------------------------ inputs


def letters(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(ord("a"), ord("z") + 1, size=(n, 8), dtype=np.uint8)


def old_hash_flood(n: int, seed: int = 0) -> list[str]:
    """n distinct 8-letter words whose homes under the old fixed hash fall in 2,048 neighbouring places of the
    table that holds them (one probing cluster)."""
    bits = max(13, int(np.ceil(np.log2(4 * n + 1))))
    m = np.uint64(OLD_MULTIPLIER)
    rng, found = np.random.default_rng(seed), {}
    while len(found) < n:
        rows = letters(rng, 1 << 21)
        mixed = rows.view("<u8").reshape(-1) * m
        mixed ^= mixed >> np.uint64(29)
        mixed *= m
        for row in rows[(mixed >> np.uint64(64 - bits)) < 2048]:
            found[bytes(row).decode()] = None
    return list(found)[:n]


def random_words(n: int, seed: int = 1) -> list[str]:
    return list(dict.fromkeys(bytes(r).decode() for r in letters(np.random.default_rng(seed), n)))


def sixteen(words: list[str]) -> list[str]:
    return [" ".join(words[i::16]) for i in range(16)]


# ------------------------------------------------------------------------------------------------ scenarios


def flood(code: Path, n: int) -> dict:
    out = {}
    for name, words in (("random", random_words(n)), ("crafted_old_hash", old_hash_flood(n))):
        server = Server(code)
        try:
            runs = [server.post("/v1/moderations", {"input": sixteen(words)}) for _ in range(2)]
            out[name] = {"words": len(words), "status": [r[0] for r in runs], "first_s": round(runs[0][2], 3),
                         "repeat_s": round(runs[1][2], 3)}
        finally:
            server.stop()
    return out


def flood_known_key(n: int) -> dict:
    """This tree's table against words crafted with its own key: seconds and probes, against random words."""
    from lite_moderation import load_scorer
    from lite_moderation.fast import _WordTable

    out = {}
    for name in ("random", "crafted_own_key"):
        scorer = load_scorer()
        [cache] = {id(b.cache): b.cache for b in scorer.blocks if b.fast and b.source == "response"}.values()
        if name == "random":
            words = random_words(n)
        else:
            bits = max(13, int(np.ceil(np.log2(4 * n + 1))))
            sized, rng, found = _WordTable(bits, cache.table.multipliers), np.random.default_rng(2), {}
            while len(found) < n:
                rows = letters(rng, 1 << 21)
                keys = np.zeros((len(rows), 3), dtype=np.uint64)
                keys[:, 0] = rows.view("<u8").reshape(-1)
                for row in rows[sized._home(keys) < 2048]:
                    found[bytes(row).decode()] = None
            words = list(found)[:n]
        times = []
        for _ in range(2):
            started = time.perf_counter()
            scorer.predict_proba(sixteen(words))
            times.append(round(time.perf_counter() - started, 3))
        out[name] = {"words": len(words), "first_s": times[0], "repeat_s": times[1], "probes": cache.table.probes,
                     "overflow_words": len(cache.table.overflow)}
    return out


def amplification(code: Path, after: bool) -> dict:
    rows = [json.loads(line) for line in (ROOT.parent / "shared" / "data" / "beavertails" / "30k_test.jsonl")
            .read_text(encoding="utf-8").split("\n")[:4000] if line]
    text = " ".join(r["response"] for r in rows)[:990_000]  # the body just under the 1,000,000-byte limit
    server = Server(code)
    try:
        rss = server.rss_mb()
        status, size, seconds = server.post("/v1/explain", {"input": text})
        out = {"input_chars": len(text), "status": status, "answer_bytes": size, "seconds": round(seconds, 2),
               "rss_mb_before": round(rss, 1), "rss_mb_after": round(server.rss_mb(), 1)}
        if after:
            from lite_moderation.taxonomy import LABELS

            status, size, seconds = server.post("/v1/explain", {"input": text[:99_000], "labels": list(LABELS)})
            out["largest_allowed"] = {"input_chars": 99_000, "labels": len(LABELS), "status": status,
                                      "answer_bytes": size, "seconds": round(seconds, 2)}
        return out
    finally:
        server.stop()


def memory(code: Path, count: int) -> dict:
    rng = np.random.default_rng(4)
    server = Server(code)
    try:
        server.post("/v1/moderations", {"input": "warm up"})
        rss = [round(server.rss_mb(), 1)]
        for _ in range(count):
            word = "".join(rng.choice(WORDS, size=220_000))[:990_000]
            assert server.post("/v1/moderations", {"input": word})[0] == 200
            rss.append(round(server.rss_mb(), 1))
        return {"requests": count, "word_chars": 990_000, "rss_mb": rss}
    finally:
        server.stop()


def cliff(code: Path) -> dict:
    words = random_words(25_000, seed=5)
    out = {}
    for name, shape in (("one_text", lambda w: " ".join(w)), ("sixteen_texts", sixteen)):
        server = Server(code)
        try:
            first = server.post("/v1/moderations", {"input": shape(words)})[2]
            changed = [server.post("/v1/moderations", {"input": shape([*words[:-1], f"change{i}"])})[2]
                       for i in range(5)]
            out[name] = {"words": len(words), "first_s": round(first, 3),
                         "one_word_changed_mean_s": round(float(np.mean(changed)), 4)}
        finally:
            server.stop()
    return out


# ------------------------------------------------------------------------------------------------ report


def markdown(result: dict) -> str:
    b, a = result["before"], result["after"]
    n = a["flood"]["random"]["words"]
    lines = [
        "# Denial of service through the server (issue 22): before and after",
        "",
        (f"`PYTHONPATH=. python benchmarks/server_dos.py` (before: `{result['baseline']}`; after: this tree). "
        f"{result['machine']['cpus']} cores, load average before {result['machine']['load_average_before']}, "
        "shared with other work: seconds are indicative; probes, bytes and statuses are the point."),
        "",
        f"## Hash flooding: one request of 16 texts, {n:,} 8-letter words ({n * 9:,} bytes)",
        "",
        "| code | words | first request s | repeat s |",
        "|---|---|---:|---:|",
    ]
    for label, side in (("before", b), ("after", a)):
        for name, row in side["flood"].items():
            lines.append(f"| {label} | {name} | {row['first_s']} | {row['repeat_s']} |")
    lines += ["", "The new table's worst case, in-process: words crafted against its own secret key (as if leaked):",
              "", "| words | first s | repeat s | probes | words in the overflow dict |", "|---|---:|---:|---:|---:|"]
    for name, row in a["flood_known_key"].items():
        lines.append(f"| {name} | {row['first_s']} | {row['repeat_s']} | {row['probes']:,} | {row['overflow_words']:,} |")
    lines += ["", "## Amplification: /v1/explain of 990,000 characters of text (default labels)", "",
              "| code | status | answer bytes | seconds | server RSS MB before -> after |", "|---|---:|---:|---:|---|"]
    for label, side in (("before", b), ("after", a)):
        row = side["amplification"]
        lines.append(f"| {label} | {row['status']} | {row['answer_bytes']:,} | {row['seconds']} | "
                     f"{row['rss_mb_before']} -> {row['rss_mb_after']} |")
    big = a["amplification"]["largest_allowed"]
    lines += ["", (f"After: the largest request allowed ({big['input_chars']:,} characters, all {big['labels']} "
              f"labels, default top): status {big['status']}, {big['answer_bytes']:,} bytes, {big['seconds']} s."),
              "", f"## Memory: server RSS (MB) after each of {a['memory']['requests']} requests of one 990,000-character word", ""]
    for label, side in (("before", b), ("after", a)):
        lines.append(f"- {label}: {' -> '.join(map(str, side['memory']['rss_mb']))}")
    lines += ["", "## Slow-path cliff: 25,000 words as one text or as 16, then one word changed (mean of 5)", "",
              "| code | shape | first s | one word changed s |", "|---|---|---:|---:|"]
    for label, side in (("before", b), ("after", a)):
        for name, row in side["cliff"].items():
            lines.append(f"| {label} | {name} | {row['first_s']} | {row['one_word_changed_mean_s']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    n = args.flood_bytes // 9
    result = {"machine": machine("servers and client share the machine (loopback)"), "baseline": args.baseline,
              "flood_bytes": args.flood_bytes}
    with tempfile.TemporaryDirectory() as tmp:
        for label, code in (("before", baseline_code(args.baseline, Path(tmp))), ("after", ROOT)):
            print(f"{label}: flood", flush=True)
            side = {"flood": flood(code, n)}
            print(side, flush=True)
            if label == "after":
                side["flood_known_key"] = flood_known_key(n)
            print(f"{label}: amplification", flush=True)
            side["amplification"] = amplification(code, label == "after")
            print(f"{label}: memory", flush=True)
            side["memory"] = memory(code, args.big_words)
            print(f"{label}: cliff", flush=True)
            side["cliff"] = cliff(code)
            result[label] = side
            print(json.dumps(side, indent=1), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS / "server_dos.json", json.dumps(result, indent=2) + "\n")
    write_text(RESULTS / "server_dos.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
