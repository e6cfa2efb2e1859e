#!/usr/bin/env python3
"""Judges one run of the partition test (scripts/partition/run.sh). Standard library only.

  check.py OUT_DIR

OUT_DIR holds what run.sh wrote: meta.json, events.jsonl, history-<node>.jsonl, census.jsonl,
ledgers/<from>-<to>.json (`iris report --json` at the owner), sessions-<node>.json,
metrics-<node>.txt, nodes-exit.json and leftovers.json.

Checks (each violation is printed; exit status 1 if there is any):
  single-agent    at every census, at most one live agent per pair (and each on its owner)
  acked-not-lost  every `ok` reply's turn id is in the owner's ledger, for that pair and request
  at-most-once    no request id appears on two ledger turns
  bounded         every call answered within tell timeout + margin (meta.json)
  fail-not-run    a request whose every attempt failed ("did not run") is in no ledger
  no-phantom      every ledger turn belongs to a request some client made
  clean-stop      the nodes stopped on SIGTERM and left no agent behind

The request id of a ledger turn is its `request_id` field when the build records one; else the
`rid=<id>` the clients put in every message (fake-claude ignores it), which is reported as such.
"""

import glob
import json
import os
import re
import sys
from collections import Counter, defaultdict
from datetime import datetime

RID_IN_MESSAGE = re.compile(r"\brid=([0-9a-fA-F-]{36})\b")


def load_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def load_lines(path):
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except ValueError:
                    # A line cut short by a killed writer: only the last one can be.
                    print(f"note: {os.path.basename(path)}:{number} is not JSON; skipped")
    except OSError:
        pass
    return records


def iso_ms(text):
    """Unix ms of an ISO-8601 UTC time as the ledger writes it (`2026-01-02T03:04:05.678Z`)."""
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def table(headers, rows):
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and c.lstrip("-").isdigit() else c.ljust(w)
                               for c, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = sys.argv[1]
    meta = load_json(os.path.join(out, "meta.json"))
    if meta is None:
        print(f"check.py: no meta.json in {out}")
        return 2
    team_node = meta["teams"]
    pairs = meta["pairs"]
    bound_ms = (meta["tell_timeout_s"] + meta["margin_s"]) * 1000
    events = load_lines(os.path.join(out, "events.jsonl"))
    first_event = {}
    for e in events:
        first_event.setdefault(e["event"], e["t"])
    t_part = first_event.get("partition")
    t_heal = first_event.get("heal")
    cut = meta["partition_node"]

    violations = defaultdict(list)  # check -> messages
    notes = []

    # ---- history -------------------------------------------------------------------------------
    history = []
    for path in sorted(glob.glob(os.path.join(out, "history-*.jsonl"))):
        history.extend(load_lines(path))
    attempts = {}  # (rid, attempt, node) -> record with invoke + outcome
    for rec in history:
        key = (rec["request_id"], rec.get("attempt", 1), rec["node"])
        a = attempts.setdefault(key, {"rid": rec["request_id"], "attempt": rec.get("attempt", 1),
                                      "node": rec["node"], "pair": rec["pair"],
                                      "retry": rec.get("retry", False)})
        if rec["op"] == "invoke":
            a["t0"] = rec["t"]
            a["message"] = rec.get("message")
        else:
            a.update({k: v for k, v in rec.items() if k not in ("t", "request_id", "attempt")})
            a["t1"] = rec["t"]
    requests = defaultdict(list)  # rid -> attempts, in order
    for a in sorted(attempts.values(), key=lambda a: (a.get("t0", 0), a["attempt"])):
        requests[a["rid"]].append(a)

    def crosses(a):
        """Whether the call's entry node and its pair's owner are on two sides of the cut."""
        owner = team_node[a["pair"].split("->")[1]]
        return (a["node"] == cut) != (owner == cut)

    def during_partition(a):
        t0, t1 = a.get("t0"), a.get("t1", a.get("t0"))
        return t_part is not None and t_heal is not None and t0 is not None and t0 < t_heal and t1 >= t_part

    # ---- ledgers -------------------------------------------------------------------------------
    ledger = {}  # pair -> turns
    for pair in pairs:
        frm, to = pair.split("->")
        turns = load_json(os.path.join(out, "ledgers", f"{frm}-{to}.json"))
        if not isinstance(turns, list):
            violations["acked-not-lost"].append(
                f"the ledger of {pair} could not be read (ledgers/{frm}-{to}.json: {str(turns)[:200]})")
            turns = []
        ledger[pair] = turns
    has_field = any("request_id" in t for turns in ledger.values() for t in turns)
    has_values = any(t.get("request_id") for turns in ledger.values() for t in turns)
    # The ledger's request id is the client's only when the client passed --request-id; without
    # it a build may record an id of its own, so the client's id is read from the message.
    use_field = has_values and meta.get("request_id_flag")
    if not has_field:
        notes.append("request ids not recorded by this build (no `request_id` in the ledger): "
                     "a turn's request id is read from the `rid=` in its message")
    elif not has_values:
        notes.append("the ledger has a `request_id` field but every value is null: "
                     "a turn's request id is read from the `rid=` in its message")
    elif not use_field:
        notes.append("the clients did not pass --request-id, so the ledger's request ids are the node's own: "
                     "a turn's request id is read from the `rid=` in its message")
    turn_by_id = {}
    rid_turns = defaultdict(list)  # rid -> [(pair, turn)]
    unknown_status = Counter()
    for pair, turns in ledger.items():
        for t in turns:
            turn_by_id[t["turn_id"]] = (pair, t)
            rid = t.get("request_id") if use_field else None
            source = "field"
            if not rid:
                found = RID_IN_MESSAGE.search(t.get("message") or "")
                rid = found.group(1) if found else None
                source = "message"
            else:
                found = RID_IN_MESSAGE.search(t.get("message") or "")
                if found and found.group(1) != rid:
                    violations["at-most-once"].append(
                        f"turn {t['turn_id']} of {pair} records request {rid} but ran the message of {found.group(1)}")
            t["_rid"], t["_rid_source"] = rid, source
            if rid:
                rid_turns[rid].append((pair, t))
            if t.get("status") in ("queued", "running"):
                unknown_status[t.get("status")] += 1
    if unknown_status:
        notes.append(f"turns not finished when the ledgers were read: {dict(unknown_status)}")

    # ---- acked-not-lost ------------------------------------------------------------------------
    acked = [a for a in attempts.values() if a.get("op") == "ok"]
    for a in acked:
        found = turn_by_id.get(a.get("turn_id"))
        if found is None:
            violations["acked-not-lost"].append(
                f"{a['pair']} request {a['rid']} (entered at {a['node']}, attempt {a['attempt']}) was "
                f"acknowledged with turn {a.get('turn_id')} ({a.get('status')}), which is in no ledger")
        elif found[0] != a["pair"]:
            violations["acked-not-lost"].append(
                f"{a['pair']} request {a['rid']}: its turn {a['turn_id']} is in the ledger of {found[0]}")
        elif found[1]["_rid"] and found[1]["_rid"] != a["rid"]:
            violations["acked-not-lost"].append(
                f"{a['pair']} request {a['rid']}: its turn {a['turn_id']} ran request {found[1]['_rid']}")

    # ---- at-most-once --------------------------------------------------------------------------
    expected_dupes = []
    for rid, turns in rid_turns.items():
        if len(turns) < 2:
            continue
        tried = requests.get(rid, [])
        retried = any(a["retry"] for a in tried)
        what = (f"request {rid} ran {len(turns)} times: "
                + ", ".join(f"{p} turn {t['turn_id']} queued {t.get('queued_at')} ({t.get('status')})" for p, t in turns)
                + "; attempts: " + ", ".join(f"#{a['attempt']} at {a['node']} {a.get('op', 'no outcome')}" for a in tried))
        if retried and not meta.get("request_id_flag"):
            expected_dupes.append(what)
        else:
            violations["at-most-once"].append(what)
    if expected_dupes:
        notes.append(f"{len(expected_dupes)} request(s) ran twice because an unknown outcome was retried "
                     "and the clients did not pass --request-id to deduplicate it (expected without request ids):")
        notes.extend("  " + d for d in expected_dupes)

    # ---- no-phantom ----------------------------------------------------------------------------
    no_rid = 0
    for pair, turns in ledger.items():
        for t in turns:
            if not t["_rid"]:
                no_rid += 1
                violations["no-phantom"].append(f"{pair} turn {t['turn_id']} carries no request id: {t.get('message')!r:.80}")
            elif t["_rid"] not in requests:
                violations["no-phantom"].append(f"{pair} turn {t['turn_id']} ran request {t['_rid']}, which no client made")

    # ---- fail-not-run --------------------------------------------------------------------------
    for rid, tried in requests.items():
        if tried and all(a.get("op") == "fail" for a in tried) and rid in rid_turns:
            a = tried[0]
            violations["fail-not-run"].append(
                f"{a['pair']} request {rid} (at {a['node']}) failed with {a.get('code')} \"{a.get('message')}\" "
                f"yet ran: turn {rid_turns[rid][0][1]['turn_id']} ({rid_turns[rid][0][1].get('status')})")

    # ---- bounded -------------------------------------------------------------------------------
    durations = []
    for a in attempts.values():
        if "op" not in a:
            violations["bounded"].append(
                f"{a['pair']} request {a['rid']} (at {a['node']}, attempt {a['attempt']}) has no outcome (its client was killed)")
            continue
        durations.append(a["duration_ms"])
        if a["duration_ms"] > bound_ms or a.get("code") == "CLI_KILLED":
            violations["bounded"].append(
                f"{a['pair']} request {a['rid']} entered at {a['node']} took {a['duration_ms']} ms > {bound_ms} ms: "
                f"{a['op']} {a.get('code') or a.get('status')} {a.get('message') or ''}".rstrip())

    # ---- single-agent --------------------------------------------------------------------------
    session_pair = {}
    for pair, turns in ledger.items():
        for t in turns:
            if t.get("session_id"):
                session_pair[t["session_id"]] = pair
    for path in glob.glob(os.path.join(out, "sessions-*.json")):
        for s in load_json(path, []) or []:
            if isinstance(s, dict) and s.get("session_id"):
                pair = f"{s['from_team']}->{s['to_team']}"
                session_pair[s["session_id"]] = pair
                # The agent may run under another conversation id (`--resume=<id>` after a restart).
                for found in re.finditer(r"--(?:session-id|resume)=([0-9a-fA-F-]{36})", s.get("launch_command") or ""):
                    session_pair.setdefault(found.group(1), pair)
                if s.get("agent_session_id"):
                    session_pair.setdefault(s["agent_session_id"], pair)
    for a in acked:
        if a.get("session_id"):
            session_pair.setdefault(a["session_id"], a["pair"])
    census = load_lines(os.path.join(out, "census.jsonl"))
    max_agents = Counter()
    max_total = 0
    others = 0
    unresolved = set()
    reported = set()
    for c in census:
        per_pair = defaultdict(list)
        for ag in c["agents"]:
            if ag.get("role") != "agent":
                others += 1
                continue
            pair = session_pair.get(ag.get("session"))
            if pair is None:
                unresolved.add(ag.get("session"))
                pair = f"?->{ag['to']} (session {ag.get('session')})"
            per_pair[pair].append(ag)
            owner = team_node.get(ag["to"])
            if ag.get("node") != owner and ("node", ag["pid"]) not in reported:
                reported.add(("node", ag["pid"]))
                violations["single-agent"].append(
                    f"agent pid {ag['pid']} of {pair} runs on {ag.get('node')}, but {ag['to']} is hosted by {owner}")
        max_total = max(max_total, sum(len(v) for v in per_pair.values()))
        for pair, ags in per_pair.items():
            max_agents[pair] = max(max_agents[pair], len(ags))
            if len(ags) > 1:
                key = (pair, tuple(sorted(a["pid"] for a in ags)))
                if key not in reported:
                    reported.add(key)
                    violations["single-agent"].append(
                        f"census at {c['t']}: {len(ags)} live agents for {pair}: "
                        + ", ".join(f"pid {a['pid']} on {a.get('node')} (parent {a.get('ppid')}, tag {a.get('tag')})" for a in ags))
    if unresolved:
        notes.append(f"{len(unresolved)} agent session id(s) matched no pair (counted per session): {sorted(map(str, unresolved))[:5]}")
    if others:
        notes.append(f"{others} census sightings of fake-claude processes that are not agents (tool helpers)")

    # ---- clean-stop ----------------------------------------------------------------------------
    for n in load_json(os.path.join(out, "nodes-exit.json"), []) or []:
        if n.get("stopped_by") != "sigterm":
            violations["clean-stop"].append(f"node {n['node']} did not stop within 15 s of SIGTERM; it was killed")
        elif n.get("exit") != 0:
            violations["clean-stop"].append(f"node {n['node']} exited with status {n.get('exit')} after SIGTERM")
    leftovers = load_json(os.path.join(out, "leftovers.json"))
    if leftovers is None:
        notes.append("no leftovers.json: whether agents were left behind is not known")
    for ag in leftovers or []:
        violations["clean-stop"].append(
            f"agent pid {ag['pid']} ({ag.get('to')}, session {ag.get('session')}, node {ag.get('node')}) outlived its node")

    # ---- summary -------------------------------------------------------------------------------
    rows = []
    for pair in pairs:
        first = [a for a in attempts.values() if a["pair"] == pair and not a["retry"]]
        again = [a for a in attempts.values() if a["pair"] == pair and a["retry"]]
        ops = Counter(a.get("op", "none") for a in first)
        rops = Counter(a.get("op", "none") for a in again)
        rows.append([
            pair, team_node[pair.split("->")[1]], len(first), ops["ok"], ops["fail"], ops["unknown"],
            f"{rops['ok']}/{rops['fail']}/{rops['unknown']}" if again else "-",
            len(ledger[pair]), max_agents.get(pair, 0),
            max((a.get("duration_ms", 0) for a in first + again), default=0),
        ])
    print(f"partition test: {meta.get('iris_version')}; cut {cut} ({meta.get('partition_method')}) for "
          f"{(t_heal - t_part) / 1000 if t_part and t_heal else '?'} s; bound {bound_ms} ms "
          f"(tell --timeout {meta['tell_timeout_s']}s + {meta['margin_s']}s margin); "
          f"--request-id {'passed' if meta.get('request_id_flag') else 'not passed'}")
    print()
    print(table(["pair", "owner", "calls", "ok", "fail", "unknown", "retries ok/fail/unk", "ledger turns",
                 "max agents", "max ms"], rows))
    print()

    # Calls by phase, and whether they crossed the cut.
    def phase(a):
        t0 = a.get("t0", 0)
        if t_part is None or t0 < t_part:
            return "1 before"
        if t_heal is None or t0 < t_heal:
            return "2 during"
        return "3 after" if not a["retry"] else "4 retry"
    by_phase = defaultdict(Counter)
    slowest = defaultdict(int)
    for a in attempts.values():
        key = (phase(a), "across the cut" if crosses(a) else "same side")
        by_phase[key][a.get("op", "none")] += 1
        slowest[key] = max(slowest[key], a.get("duration_ms", 0))
    print(table(["phase", "calls", "ok", "fail", "unknown", "max ms"],
                [[f"{p[2:]} / {side}", sum(c.values()), c["ok"], c["fail"], c["unknown"], slowest[(p, side)]]
                 for (p, side), c in sorted(by_phase.items())]))
    print()

    # Unknown outcomes: did they run?
    unknown_first = [rid for rid, tried in requests.items() if tried and tried[0].get("op") == "unknown"]
    ran = sum(1 for rid in unknown_first if rid in rid_turns)
    settled = Counter(tried[-1].get("op", "none") for rid, tried in requests.items() if rid in unknown_first)
    if unknown_first:
        print(f"unknown outcomes: {len(unknown_first)}; of them {ran} ran at least once (ledger), "
              f"{len(unknown_first) - ran} never ran; last attempt after retries: {dict(settled)}")
    # When did the unknown ones run, compared with when their caller was told "unknown"?
    # A turn that started only once its retry was made ran because of the retry (the first
    # attempt never reached the owner); one that started before ran from the first attempt,
    # possibly late (delivered after the caller gave up).
    late, by_retry = [], 0
    for rid in unknown_first:
        told = requests[rid][0].get("t1")
        retried = [a.get("t0") for a in requests[rid][1:] if a.get("t0")]
        for _, t in rid_turns.get(rid, []):
            started = iso_ms(t.get("started_at"))
            if retried and started and started >= min(retried):
                by_retry += 1
            elif told and started:
                late.append((started - told, rid, t["turn_id"]))
    if unknown_first:
        print(f"unknown outcomes run by their retry (the first attempt never ran): {by_retry}")
    if late:
        late.sort()
        print(f"unknown outcomes run by their first attempt: {len(late)}; the turn started from "
              f"{late[0][0] / 1000:.1f} s to {late[-1][0] / 1000:.1f} s after the caller was told the outcome "
              f"was unknown (latest: request {late[-1][1]})")
    if t_heal:
        after = sorted(a["t1"] for a in attempts.values()
                       if crosses(a) and a.get("op") == "ok" and a.get("t0", 0) >= t_heal)
        up_again = first_event.get("cluster_up_again")
        print("recovery after heal: " +
              (f"every node saw every peer up after {(up_again - t_heal) / 1000:.1f} s; " if up_again else "the cluster never showed all up; ") +
              (f"first call across the cut answered ok {(after[0] - t_heal) / 1000:.1f} s after the heal" if after else
               "no call across the cut succeeded after the heal"))
    codes = Counter((a.get("op"), a.get("code") or a.get("status")) for a in attempts.values() if a.get("op"))
    print("outcomes by code: " + ", ".join(f"{op}/{code}: {n}" for (op, code), n in sorted(codes.items(), key=str)))
    over = sorted((a["duration_ms"], a) for a in attempts.values()
                  if a.get("duration_ms", 0) > meta["tell_timeout_s"] * 1000 + 500)
    if over:
        worst = over[-1][1]
        print(f"calls that outlived their own --timeout {meta['tell_timeout_s']}s by more than 0.5 s: {len(over)} "
              f"(longest {worst['duration_ms']} ms: {worst['pair']} at {worst['node']}, {worst.get('op')} "
              f"{worst.get('code') or worst.get('status')})")
    if durations:
        ds = sorted(durations)
        print(f"call durations: n={len(ds)} median {ds[len(ds) // 2]} ms, p99 {ds[min(len(ds) - 1, int(len(ds) * 0.99))]} ms, max {ds[-1]} ms")
    print(f"census: {len(census)} samples, at most {max_total} live agents at once")
    for path in sorted(glob.glob(os.path.join(out, "metrics-*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            forwards = [line.split("{", 1)[1] for line in f if line.startswith("iris_cluster_forwards_total{")]
        if forwards:
            print(f"{os.path.basename(path)[8:-4]} forwards: " + ", ".join(l.strip() for l in forwards))
    timeline = ", ".join(f"{e['event']}{'(' + e['node'] + ')' if e.get('node') else ''} +{(e['t'] - events[0]['t']) / 1000:.1f}s"
                         for e in events) if events else "none"
    print(f"events: {timeline}")
    if not any(a.get("op") in ("fail", "unknown") for a in attempts.values() if crosses(a) and during_partition(a)):
        notes.append("no call across the cut failed during the partition: the partition may not have taken effect")
    if notes:
        print()
        for n in notes:
            print(f"note: {n}")

    checks = ["single-agent", "acked-not-lost", "at-most-once", "bounded", "fail-not-run", "no-phantom", "clean-stop"]
    print()
    print(table(["check", "result", "violations"],
                [[c, "PASS" if not violations[c] else "FAIL", len(violations[c])] for c in checks]))
    total = sum(len(v) for v in violations.values())
    for c in checks:
        if violations[c]:
            print()
            print(f"{c}: {len(violations[c])} violation(s)")
            for v in violations[c][:20]:
                print(f"  - {v}")
            if len(violations[c]) > 20:
                print(f"  … and {len(violations[c]) - 20} more")
    print()
    print("RESULT: " + ("PASS" if total == 0 else f"FAIL ({total} violation(s))"))
    return 0 if total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
