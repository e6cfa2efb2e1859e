#!/usr/bin/env python3
"""The moving parts of the partition test (scripts/partition/run.sh), standard library only.

  client.py worker  --node n1 --pairs alpha->beta,... --history FILE --stop FILE ...
      Inside node n1's namespace: one thread per pair, each issuing `iris tell` calls with a
      fresh request id until the stop file exists, recording every call in the history.
  client.py retry   --node n1 --history FILE ...
      Inside n1's namespace, after the run: retries every request whose last attempt ended
      `unknown`, with the same request id and the same message, and records that too.
  client.py census  --out FILE --stop FILE --exe PATH --root DIR
      In any namespace (/proc is shared): every ~300 ms, the live fake-claude agents under DIR.
  client.py metrics --endpoint FILE
      Inside a node's namespace: prints that node's /metrics.
  client.py leftovers --exe PATH --root DIR
      Prints (JSON) the fake-claude processes under DIR that are still alive.

History lines (JSON): {"t": unix ms, "node", "pair", "request_id", "op": "invoke", "attempt", ...}
then one of op "ok" (exit 0 with a turn id), "fail" (the request did not run) or "unknown"
(it may have run: the outcome is unknown, a CLI timeout, any other error), with "duration_ms",
"exit", "code", "message", "turn_id", "status" and "session_id" as known.
"""

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

# The request id also travels in the message (`!sleep N rid=<id>`: fake-claude sleeps N ms and
# ignores the rest), so the ledger shows which request a turn ran even when the build does not
# record request ids.
RID_IN_MESSAGE = re.compile(r"\brid=([0-9a-fA-F-]{36})\b")
IRIS_REQUEST_IN_MESSAGE = re.compile(r"\brequest ([0-9a-fA-F-]{36})\b")


def now_ms():
    return int(time.time() * 1000)


class History:
    """An append-only JSON-lines file shared by the threads of one process."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, record):
        line = json.dumps(record, sort_keys=True)
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()


def classify(rc, stdout, stderr, killed):
    """(op, details) of one finished `iris tell --json` call."""
    details = {"exit": rc}
    if killed:
        details["code"] = "CLI_KILLED"
        details["message"] = "the CLI did not answer within the kill limit; it was killed"
        return "unknown", details
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        doc = None
    if rc == 0:
        if isinstance(doc, dict) and doc.get("turn_id"):
            for key in ("turn_id", "status", "session_id"):
                details[key] = doc.get(key)
            return "ok", details
        details["code"] = "BAD_REPLY"
        details["message"] = "exit 0 without a turn id: " + (stdout or stderr)[:300]
        return "unknown", details
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code", ""))
        message = str(error.get("message", ""))
    else:
        code = "NO_JSON_ERROR"
        message = (stdout + stderr).strip()[-500:]
    details["code"] = code
    details["message"] = message
    found = IRIS_REQUEST_IN_MESSAGE.search(message)
    if found:
        details["iris_request"] = found.group(1)
    lowered = message.lower()
    # "Unknown" first: it is the weaker claim, so a message that mentions both is not taken for
    # a promise that the request did not run.
    if "unknown" in lowered or "may have run" in lowered:
        return "unknown", details
    if "did not run" in lowered:
        return "fail", details
    # Refused before anything ran: usage/config/validation (2), not found (3), busy/queue full (4).
    if rc in (2, 3, 4):
        return "fail", details
    # Anything else (agent failure 5, idle timeout, internal error): it may have run.
    return "unknown", details


def tell(args, env, record_base, message, request_id, history, attempt, retry):
    """One `iris tell`, recorded as invoke then its outcome. Returns the outcome op."""
    frm, to = record_base["pair"].split("->")
    argv = [args.iris, "--json", "tell", frm, to, message, "--timeout", f"{args.timeout}s"]
    if args.request_id_flag:
        argv += ["--request-id", request_id]
    base = dict(record_base, request_id=request_id, attempt=attempt, retry=retry)
    history.write(dict(base, t=now_ms(), op="invoke", message=message))
    start = time.monotonic()
    killed = False
    try:
        proc = subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=args.kill_after,
        )
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as expired:
        killed = True
        rc = None
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        err = expired.stderr.decode() if isinstance(expired.stderr, bytes) else (expired.stderr or "")
    duration_ms = int((time.monotonic() - start) * 1000)
    op, details = classify(rc, out, err, killed)
    history.write(dict(base, t=now_ms(), op=op, duration_ms=duration_ms, **details))
    return op


def client_env(args):
    env = dict(os.environ)
    for name in ("RUST_LOG", "IRIS_HOME", "IRIS_CLIENT_IDLE_TIMEOUT"):
        env.pop(name, None)
    env["IRIS_NODE"] = args.node
    env["IRIS_CONFIG"] = args.config
    return env


def worker(args):
    history = History(args.history)
    env = client_env(args)
    pairs = [p for p in args.pairs.split(",") if p]

    def run_pair(pair, seed):
        rng = random.Random(seed)
        base = {"node": args.node, "pair": pair}
        while not os.path.exists(args.stop):
            request_id = str(uuid.uuid4())
            sleep_ms = rng.randint(args.sleep_min_ms, args.sleep_max_ms)
            message = f"!sleep {sleep_ms} rid={request_id}"
            op = tell(args, env, base, message, request_id, history, attempt=1, retry=False)
            # A call that failed at once would spin: back off a little longer after one.
            pause = args.pause_ms if op == "ok" else max(args.pause_ms, 500)
            time.sleep(pause / 1000.0)

    threads = [
        threading.Thread(target=run_pair, args=(pair, f"{args.node}/{pair}/{os.getpid()}"), daemon=True)
        for pair in pairs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def retry(args):
    """Retries every request of this node whose last attempt is `unknown`, same id, same message."""
    calls = {}
    with open(args.history, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("node") != args.node:
                continue
            entry = calls.setdefault(rec["request_id"], {"pair": rec["pair"], "attempts": 0})
            if rec["op"] == "invoke":
                entry["message"] = rec["message"]
                entry["attempts"] = max(entry["attempts"], rec.get("attempt", 1))
            else:
                entry["last"] = rec["op"]
    pending = [(rid, c) for rid, c in calls.items() if c.get("last") == "unknown"]
    history = History(args.history)
    env = client_env(args)
    by_pair = {}
    for rid, call in pending:
        by_pair.setdefault(call["pair"], []).append((rid, call))

    def run_pair(pair, items):
        base = {"node": args.node, "pair": pair}
        for rid, call in items:
            attempt = call["attempts"]
            for _ in range(args.retries):
                attempt += 1
                op = tell(args, env, base, call["message"], rid, history, attempt=attempt, retry=True)
                if op != "unknown":
                    break
                time.sleep(1.0)

    threads = [threading.Thread(target=run_pair, args=(p, items)) for p, items in by_pair.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{args.node}: retried {len(pending)} unknown request(s)")


def read(path, binary=False):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data if binary else data.decode("utf-8", "replace")
    except OSError:
        return None


def agents(exe, root):
    """The live fake-claude processes whose working directory is under `root`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.readlink(f"/proc/{pid}/exe") != exe:
                continue
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if not (cwd == root or cwd.startswith(root + "/")):
            continue
        stat = read(f"/proc/{pid}/stat")
        state = ppid = None
        if stat:
            fields = stat[stat.rfind(")") + 2:].split()
            state, ppid = fields[0], int(fields[1])
        if state in ("Z", "X"):
            continue
        cmdline = (read(f"/proc/{pid}/cmdline", binary=True) or b"").split(b"\0")
        cmdline = [a.decode("utf-8", "replace") for a in cmdline if a]
        environ = {}
        for item in (read(f"/proc/{pid}/environ", binary=True) or b"").split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep and key in (b"IRIS_NODE", b"IRIS_AGENT_TAG"):
                environ[key.decode()] = value.decode("utf-8", "replace")
        session = None
        role = "other"  # a tool helper or MCP server fake-claude started, not an agent
        for arg in cmdline[1:]:
            for prefix in ("--session-id=", "--resume="):
                if arg.startswith(prefix):
                    session = arg[len(prefix):]
                    role = "agent"
        found.append({
            "pid": pid, "ppid": ppid, "state": state, "cwd": cwd,
            "to": os.path.basename(cwd.rstrip("/")), "session": session, "role": role,
            "node": environ.get("IRIS_NODE"), "tag": environ.get("IRIS_AGENT_TAG"),
        })
    return found


def census(args):
    exe = os.path.realpath(args.exe)
    root = os.path.realpath(args.root)
    with open(args.out, "a", buffering=1, encoding="utf-8") as out:
        while not os.path.exists(args.stop):
            out.write(json.dumps({"t": now_ms(), "agents": agents(exe, root)}, sort_keys=True) + "\n")
            time.sleep(args.interval)


def leftovers(args):
    found = agents(os.path.realpath(args.exe), os.path.realpath(args.root))
    if not args.any:
        found = [a for a in found if a["role"] == "agent"]
    print(json.dumps(found))


def metrics(args):
    with open(args.endpoint, encoding="utf-8") as f:
        endpoint = json.load(f)
    request = urllib.request.Request(
        f"http://{endpoint['addr']}/metrics",
        headers={"Authorization": f"Bearer {endpoint['token']}"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        sys.stdout.write(reply.read().decode("utf-8", "replace"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("worker", "retry"):
        p = sub.add_parser(name)
        p.add_argument("--node", required=True)
        p.add_argument("--iris", required=True)
        p.add_argument("--config", required=True)
        p.add_argument("--history", required=True)
        p.add_argument("--timeout", type=int, default=5, help="tell --timeout, whole seconds")
        p.add_argument("--kill-after", type=float, default=30, help="kill a CLI call after this, seconds")
        p.add_argument("--request-id-flag", action="store_true", help="pass --request-id")
        if name == "worker":
            p.add_argument("--pairs", required=True)
            p.add_argument("--stop", required=True)
            p.add_argument("--sleep-min-ms", type=int, default=50)
            p.add_argument("--sleep-max-ms", type=int, default=800)
            p.add_argument("--pause-ms", type=int, default=200)
        else:
            p.add_argument("--retries", type=int, default=3)
    p = sub.add_parser("census")
    p.add_argument("--out", required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("--exe", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--interval", type=float, default=0.3)
    p = sub.add_parser("leftovers")
    p.add_argument("--exe", required=True)
    p.add_argument("--any", action="store_true", help="every process of that executable, not only agents")
    p.add_argument("--root", required=True)
    p = sub.add_parser("metrics")
    p.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    {"worker": worker, "retry": retry, "census": census, "leftovers": leftovers,
     "metrics": metrics}[args.command](args)


if __name__ == "__main__":
    main()
