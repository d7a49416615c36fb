#!/usr/bin/env python3
"""The installed daemon under the environment its unit gives it, without systemd as PID 1.

Runs /usr/bin/fimd run (as `systemctl start fimd` would) with:
  NOTIFY_SOCKET      a datagram socket we read: READY=1, STATUS=, WATCHDOG=1, STOPPING=1
  WATCHDOG_USEC      2 s, so pings must come at least every second
  CREDENTIALS_DIRECTORY  holding slack-webhook-url (LoadCredential=), pointing at a local mock
  INVOCATION_ID, JOURNAL_STREAM  so fimd logs to a standalone systemd-journald that runs in a
                     private mount namespace (nothing outside it is touched)
then changes a watched file and checks: the alert reached the mock Slack sink, the journal has
the FIM_* record, the credential never appears in the journal or on stderr, SIGTERM exits 0
with STOPPING=1. Needs root, unshare and systemd-journald. Exit 0 on success.
"""
import http.server, json, os, socket, subprocess, sys, tempfile, threading, time

FIMD = os.environ.get("FIMD", "/usr/bin/fimd")
MARK = "CREDMARK_5e1f"

def fail(msg):
    print("daemon env test FAILED:", msg, file=sys.stderr)
    sys.exit(1)

def inner(work):
    """Inside `unshare -m`: private /run with journald, then the test."""
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal", exist_ok=True)
    if os.path.isdir("/var/log/journal"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/var/log/journal"], check=True)
    journald = subprocess.Popen(["/lib/systemd/systemd-journald"])
    deadline = time.time() + 10
    while not os.path.exists("/run/systemd/journal/socket"):
        if time.time() > deadline:
            fail("journald did not start")
        time.sleep(0.05)
    try:
        run_test(work)
    finally:
        journald.terminate()
        journald.wait()

class Sink(http.server.BaseHTTPRequestHandler):
    seen = []
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Sink.seen.append((self.path, body.decode("utf-8", "replace")))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

def run_test(work):
    tree = os.path.join(work, "tree")
    os.makedirs(tree)
    with open(os.path.join(tree, "app.conf"), "w") as f:
        f.write("a=1\n")
    server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    creds = os.path.join(work, "creds")
    os.makedirs(creds, mode=0o700)
    with open(os.path.join(creds, "slack-webhook-url"), "w") as f:
        f.write("http://127.0.0.1:%d/services/T0/B0/%s\n" % (server.server_port, MARK))
    cfg = os.path.join(work, "fimd.toml")
    with open(cfg, "w") as f:
        f.write('[daemon]\ndatabase = "%s/db/fimd.db"\ndebounce = "100ms"\n\n[[watch]]\npath = "%s"\n\n'
                '[users]\nauthorized_keys = false\n\n[notify]\nbatch_window = "1s"\n\n[notify.slack]\n'
                % (work, tree))
    sock_path = os.path.join(work, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    stderr_path = os.path.join(work, "stderr.log")
    stderr = open(stderr_path, "w")
    st = os.fstat(stderr.fileno())
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TEAMS_", "JIRA_", "SERVICENOW_", "RAPID7_"))}
    env.update(NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="2000000", CREDENTIALS_DIRECTORY=creds,
               INVOCATION_ID="0123456789abcdef0123456789abcdef",
               JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
    proc = subprocess.Popen([FIMD, "--config", cfg, "run"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    messages = []
    def wait_msg(pred, what, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            if any(pred(m) for m in messages):
                return
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                if proc.poll() is not None:
                    fail("fimd exited early (%s) waiting for %s" % (proc.returncode, what))
        fail("no %s within %d s; got %r" % (what, limit, messages))
    try:
        wait_msg(lambda m: "READY=1" in m, "READY=1")
        with open(os.path.join(tree, "app.conf"), "w") as f:
            f.write("a=2\n")
        deadline = time.time() + 30
        while not Sink.seen and time.time() < deadline:
            time.sleep(0.1)
        if not Sink.seen:
            fail("no alert reached the Slack sink configured through CREDENTIALS_DIRECTORY")
        path, body = Sink.seen[0]
        if path != "/services/T0/B0/" + MARK or "app.conf" not in body:
            fail("unexpected Slack request %r %r" % (path, body[:200]))
        before = sum("WATCHDOG=1" in m for m in messages)
        time.sleep(2.5)  # the watchdog interval is the thing under test here
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        if sum("WATCHDOG=1" in m for m in messages) - before < 2:
            fail("fewer than 2 WATCHDOG=1 pings in 2.5 s with WATCHDOG_USEC=2000000: %r" % messages)
        jr = subprocess.run(["journalctl", "--no-pager", "-t", "fimd", "-o", "json", "FIM_EVENT=modified"],
                            capture_output=True, text=True)
        records = [json.loads(l) for l in jr.stdout.splitlines() if l.strip()]
        if not any(r.get("FIM_PATH", "").endswith("app.conf") and r.get("FIM_CHANGED") for r in records):
            fail("no FIM_EVENT=modified journal record for app.conf: %r" % jr.stdout[:500])
        everything = subprocess.run(["journalctl", "--no-pager", "-o", "json"], capture_output=True, text=True).stdout
        if MARK in everything:
            fail("the credential reached the journal")
    finally:
        proc.terminate()
        t0 = time.time()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail("fimd did not exit within 10 s of SIGTERM")
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    if code != 0:
        fail("exit code %d after SIGTERM" % code)
    if not any("STOPPING=1" in m for m in messages):
        fail("no STOPPING=1")
    stderr.close()
    if MARK in open(stderr_path).read():
        fail("the credential reached stderr")
    print("daemon env test: OK (READY, WATCHDOG, STOPPING, credential sink, journal record; exit 0 in %.2f s)"
          % (time.time() - t0))

if __name__ == "__main__":
    if os.geteuid() != 0:
        fail("needs root (mount namespace for journald)")
    if len(sys.argv) > 2 and sys.argv[1] == "--inner":
        inner(sys.argv[2])
        sys.exit(0)
    with tempfile.TemporaryDirectory(prefix="fimd-envtest.") as work:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                            os.path.abspath(__file__), "--inner", work])
        sys.exit(r.returncode)
