#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The events `make demo` expects "vfmediate -j monitor" to have seen.

    story.py EVENTS EDU VF [--show]

EVENTS holds one JSON object per line. For each function: its lifecycle
events in order, and the accesses its access events account for (one
each, plus those it says were suppressed), which must be what the demo's
VFIO user did. Exit status 0 when they are, 1 when not (yet: the rate
limit may still hold some back for up to a second).
"""
import json
import sys

WANT_EDU = (["bound", "config-applied", "opened", "closed"],
            {"access-refused:id-ro": 1, "access-audited:liveness-audit": 2,
             "access-refused:no-factorial": 2})
WANT_VF = (["bound", "mediator-attached", "config-applied", "opened",
            "closed"],
           {"access-audited:vs-audit": 1, "access-refused:aqa-ro": 1})


def story(events, dev):
    life, acc = [], {}
    for e in events:
        if e["device"] != dev:
            continue
        k = e["event"]
        if not k.startswith("access-"):
            life.append(k)
            continue
        k += ":" + e["rule"]
        acc[k] = acc.get(k, 0) + ("offset" in e) + e.get("suppressed", 0)
    return life, acc


def main():
    with open(sys.argv[1]) as f:
        events = [json.loads(line) for line in f if line.strip()]
    edu, vf = story(events, sys.argv[2]), story(events, sys.argv[3])
    if "--show" in sys.argv[4:]:
        for name, (life, acc) in (("edu", edu), ("VF", vf)):
            print(f"   {name}: {' '.join(life)};",
                  ", ".join(f"{k} x{n}" for k, n in sorted(acc.items())))
    return 0 if (edu, vf) == (WANT_EDU, WANT_VF) else 1


if __name__ == "__main__":
    sys.exit(main())
