#!/usr/bin/env python3
"""Issue #16 items 1 and 12, measured on the real daemon (`fimd run`).

  benches/hugefile.py huge     # item 1: a sparse 5 GiB file hashed at hash_rate = 50 MB/s
  benches/hugefile.py burst    # item 12: RSS idle -> after 200k events -> a minute later

huge: the daemon runs with a NOTIFY_SOCKET read here and WATCHDOG_USEC=2 s (a ping due every
second). `truncate -s 5G` a watched file, then write one small file every 0.5 s (40 of them).
Prints the widest gap between watchdog pings while the big file hashes (systemd kills at
WATCHDOG_USEC), the small files' event latency (event `time` minus write time: p50, p99,
max) against the debounce + 1 s budget, and when the big file's event came.

burst: idle RSS 10 s after READY, then 200,000 files created in one directory; RSS when the
last event is recorded, then 60 s later (target: back under 2x idle).

FIMD=path/to/fimd picks the binary (default: target/ci/fimd, built with
`cargo build --profile ci`). SIZE_GIB, RATE, SMALL, FILES change the workloads.
Needs python3 only; run as the user the daemon should run as.
"""
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIMD = os.environ.get("FIMD") or os.path.join(HERE, "..", "target", "ci", "fimd")
DEBOUNCE_S = 0.2


def parse_time(text):
    # RFC 3339 UTC with nanoseconds: keep microseconds.
    head, frac = text.rstrip("Z").split(".") if "." in text else (text.rstrip("Z"), "0")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() + float("0." + frac)


class Daemon:
    def __init__(self, work, extra_daemon=""):
        self.work = work
        self.tree = os.path.join(work, "tree")
        os.makedirs(self.tree, exist_ok=True)
        self.config = os.path.join(work, "fimd.toml")
        with open(self.config, "w") as f:
            f.write(
                f'[daemon]\ndatabase = "{work}/state/fimd.db"\ndebounce = "200ms"\n'
                f'rescan_interval = "1h"\nwhodata = "off"\n{extra_daemon}\n'
                f'[[watch]]\npath = "{self.tree}"\n\n[users]\nauthorized_keys = false\n'
            )
        self.sock_path = os.path.join(work, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(0.2)
        self.messages = []  # (arrival time, text)
        self.stop = False
        env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "JOURNAL_STREAM")}
        env.update(NOTIFY_SOCKET=self.sock_path, WATCHDOG_USEC="2000000")
        self.stderr = open(os.path.join(work, "stderr.log"), "w")
        self.proc = subprocess.Popen(
            [FIMD, "--config", self.config, "run"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait(lambda: any("READY=1" in m for _, m in self.messages), "READY=1")

    def _read(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.time(), data.decode(errors="replace")))

    def wait(self, cond, what, limit=600):
        start = time.time()
        while not cond():
            if self.proc.poll() is not None:
                sys.exit(f"fimd exited while waiting for {what}")
            if time.time() - start > limit:
                sys.exit(f"timed out waiting for {what}")
            time.sleep(0.2)

    def events(self):
        out = subprocess.run([FIMD, "--config", self.config, "events", "--json"],
                             capture_output=True, text=True).stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def event_count(self):
        out = subprocess.run([FIMD, "--config", self.config, "status", "--json"],
                             capture_output=True, text=True).stdout
        try:
            return int(json.loads(out).get("events"))
        except (ValueError, TypeError, AttributeError):
            return None

    def rss_mib(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def pings(self):
        return [t for t, m in self.messages if "WATCHDOG=1" in m]

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.stop = True
        self.reader.join()
        self.sock.close()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def huge(work):
    size = int(float(os.environ.get("SIZE_GIB", "5")) * (1 << 30))
    rate = int(os.environ.get("RATE", "52428800"))
    small = int(os.environ.get("SMALL", "40"))
    d = Daemon(work, f"hash_rate = {rate}\n")
    try:
        time.sleep(3)
        big = os.path.join(d.tree, "huge.img")
        t0 = time.time()
        with open(big, "wb") as f:
            f.truncate(size)
        writes = {}
        for i in range(small):
            time.sleep(0.5)
            p = os.path.join(d.tree, f"small-{i:03}.conf")
            with open(p, "w") as f:
                f.write(f"n = {i}\n")
            writes[p] = time.time()
        d.wait(lambda: any(e["path"] == big for e in d.events()), "the big file's event",
               limit=size / rate * 4 + 120)
        t1 = time.time()
        d.wait(lambda: sum(e["path"] in writes for e in d.events()) >= small,
               "the small files' events")
        events = d.events()
        lat = [parse_time(e["time"]) - writes[e["path"]] for e in events if e["path"] in writes]
        big_at = next(parse_time(e["time"]) for e in events if e["path"] == big) - t0
        marks = [t0] + [t for t in d.pings() if t0 <= t <= t1] + [t1]
        gap = max(b - a for a, b in zip(marks, marks[1:]))
        print(f"RESULT huge size_gib={size / (1 << 30):.1f} hash_rate={rate} "
              f"big_event_after_s={big_at:.1f} widest_ping_gap_s={gap:.1f} (WATCHDOG_USEC=2s) "
              f"small_events={len(lat)}/{small} latency_p50_s={statistics.median(lat):.2f} "
              f"p99_s={pct(lat, 99):.2f} max_s={max(lat):.2f} budget_s={DEBOUNCE_S + 1:.1f}")
    finally:
        d.close()


def burst(work):
    files = int(os.environ.get("FILES", "200000"))
    d = Daemon(work)
    try:
        time.sleep(10)
        idle = d.rss_mib()
        burst_dir = os.path.join(d.tree, "burst")
        os.mkdir(burst_dir)
        t0 = time.time()
        peak = idle
        for i in range(files):
            with open(os.path.join(burst_dir, f"f{i:06}"), "w") as f:
                f.write("x\n")
            if i % 5000 == 0:
                peak = max(peak, d.rss_mib())

        def done():
            nonlocal peak
            peak = max(peak, d.rss_mib())
            n = d.event_count()
            return n is not None and n >= files
        d.wait(done, f"{files} events", limit=1800)
        took = time.time() - t0
        after = d.rss_mib()
        samples = []
        for _ in range(12):
            time.sleep(5)
            samples.append(d.rss_mib())
        print(f"RESULT burst files={files} recorded_in_s={took:.0f} rss_idle_mib={idle:.1f} "
              f"rss_peak_mib={peak:.1f} rss_after_burst_mib={after:.1f} "
              f"rss_10s_later_mib={samples[1]:.1f} rss_60s_later_mib={samples[-1]:.1f} "
              f"ratio_60s={samples[-1] / idle:.2f} (target < 2) "
              f"then_anon_mib={d.rss_mib('RssAnon'):.1f} file_mib={d.rss_mib('RssFile'):.1f}")
    finally:
        d.close()


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("huge", "burst"):
        sys.exit(__doc__)
    if not os.access(FIMD, os.X_OK):
        sys.exit(f"no fimd binary at {FIMD} (cargo build --profile ci, or set FIMD)")
    work = tempfile.mkdtemp(prefix="fimd-hugefile-")
    try:
        {"huge": huge, "burst": burst}[sys.argv[1]](work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
