#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Statistics and tables of the vfmediate benchmark.

    tests/bench/report.py [--markdown] [--commit ID] RESULTS.json...

Every round is one fresh process; it opens both functions and measures
them, then closes and opens them again, --reopen times (runs). A run
times blocks of the same operation on the function bound to vfmediate
(A) and on the one bound to vfio-pci (B) back to back, and its sample is
the median over its blocks of the ratio A/B of such a pair. A scenario's
ratio is the median of its samples, shown with their interquartile
range (the spread between runs and processes) and a 95% confidence
interval of the median (order statistics: what a comparison with a
target can trust). The floor is the same thing with vfio-pci on both
sides. Absolute times are medians over the runs of A's and B's medians.

With several result files (one per kernel, or several per kernel: the
boots of BOOTS=N, whose rounds are pooled), prints one table per kernel
and then a combined table; --markdown prints the combined table only, in
Markdown, for the README (tests/bench/readme puts it there). --commit
names the commit measured in the tables' heading.

Exits 1 when a target is missed (a verdict MISS: the median's whole 95%
confidence interval beyond the target), after printing which.
"""
from __future__ import annotations

import json
import math
import sys

# (scenario, op) -> (kind, value): "max" ratio, or "noise" (1.00 within
# the noise floor).
TARGETS = {
    ("none", "pread"): ("max", 1.02),
    ("none", "pwrite"): ("max", 1.02),
    ("r1024", "pread"): ("max", 1.05),
    ("r1024", "pwrite"): ("max", 1.05),
    ("applies", "pread"): ("max", 1.05),
    ("applies", "pwrite"): ("max", 1.05),
    ("audit", "pread"): ("max", 1.10),
    ("audit", "pwrite"): ("max", 1.10),
    ("auditmon", "pread"): ("max", 1.10),
    ("auditmon", "pwrite"): ("max", 1.10),
    ("trap", "pread"): ("max", 1.10),
    ("trap", "pwrite"): ("max", 1.10),
    ("none", "mmap"): ("noise", None),
    ("mmap16", "mmap"): ("noise", None),
    ("r1024", "open"): ("max", 1.10),
}




def quantile(xs, q):
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return s[-1]
    return s[i] + (pos - i) * (s[i + 1] - s[i])


def median_ci(xs, z=1.96):
    """Distribution-free 95% confidence interval of the median."""
    s = sorted(xs)
    n = len(s)
    if n < 6:
        return s[0], s[-1]
    lo = max(0, int(math.floor(n / 2 - z * math.sqrt(n) / 2)) - 1)
    hi = min(n - 1, int(math.ceil(n / 2 + z * math.sqrt(n) / 2)))
    return s[lo], s[hi]


def stats(xs):
    lo, hi = median_ci(xs)
    return {"n": len(xs), "median": quantile(xs, 0.5),
            "p25": quantile(xs, 0.25), "p75": quantile(xs, 0.75),
            "ci_lo": lo, "ci_hi": hi}


def summarize(result):
    """Per scenario and operation: ratio statistics and absolute times;
    per scenario: table memory and compile times."""
    out = {}
    for sc in result["scenarios"]:
        ops = {}
        for op in sc["ops"]:
            rs = [run["ops"][op] for r in sc["rounds"] for run in r["runs"]
                  if op in run["ops"]]
            if not rs:
                continue
            ratios = [x["ratio"]["med"] for x in rs]
            ops[op] = {
                "ratio": stats(ratios),
                "vfm_ns": quantile([x["A"]["med"] for x in rs], 0.5),
                "vfio_ns": quantile([x["B"]["med"] for x in rs], 0.5),
                "ret": rs[0]["A"]["ret"],
            }
        compile_ns = [c for r in sc["rounds"] if r.get("cfs")
                      for c in r["cfs"]["A"]["compile_ns"]]
        tbytes = [r["cfs"]["A"]["table_bytes"] for r in sc["rounds"]
                  if r.get("cfs") and r["cfs"]["A"]["table_bytes"] is not None]
        apply_ns = [t for r in sc["rounds"] for t in r.get("apply_ns", [])]
        out[sc["name"]] = {
            "label": sc["label"], "group": sc["group"], "floor": sc["floor"],
            "nrules": sc["nrules"], "ops": ops,
            "apply_ns": stats(apply_ns) if apply_ns else None,
            "compile_ns": stats(compile_ns) if compile_ns else None,
            # No configfs directory: the static pass-through table.
            "table_bytes": max(tbytes) if tbytes else 0,
            "audit_hits": sc.get("audit_hits"),
        }
    return out


def verdict(summary, name, op):
    t = TARGETS.get((name, op))
    if not t:
        return "", ""
    r = summary[name]["ops"][op]["ratio"]
    floor = summary.get("floor", {}).get("ops", {}).get(op)
    kind, val = t
    if kind == "max":
        if r["median"] <= val:
            return f"<={val:.2f}", "ok"
        if r["ci_lo"] <= val:
            return f"<={val:.2f}", "ok?"    # within the median's CI
        return f"<={val:.2f}", "MISS"
    # 1.00 within noise: the median's CI meets the floor's CI widened
    # around 1.
    if floor:
        f = floor["ratio"]
        band = max(abs(f["ci_lo"] - 1), abs(f["ci_hi"] - 1), 0.005)
    else:
        band = 0.01
    ok = r["ci_lo"] <= 1 + band and r["ci_hi"] >= 1 - band
    return f"1+-{band:.3f}", "ok" if ok else "MISS"


def _t(op, ns):
    if op == "open":
        return f"{ns / 1000:8.0f}us"
    return f"{ns:8.0f}ns"


def _pool(into, result):
    """Add @result's rounds to @into's, scenario by scenario."""
    scs = {sc["name"]: sc for sc in into["scenarios"]}
    for sc in result["scenarios"]:
        mine = scs.get(sc["name"])
        if mine is None:
            into["scenarios"].append(dict(sc, rounds=list(sc["rounds"])))
            continue
        mine["rounds"] += sc["rounds"]
        if mine.get("audit_hits") is not None and sc.get("audit_hits"):
            mine["audit_hits"] += sc["audit_hits"]
    into["rounds"] += result["rounds"]
    into["boots"] += 1


def pool_boots(results):
    """One result per kernel: the results of several boots of the same
    kernel (tests/bench/bench with BOOTS=N) pooled, their rounds taken
    together. Where a guest's memory lands moves a ratio more from one
    boot to the next than within a boot (the emulated MMU's TLB is
    direct-mapped), so several boots judge a target better than one."""
    by_kernel = {}
    for r in results:
        by_kernel.setdefault(r["kernel"], []).append(r)
    out = []
    for k, rs in by_kernel.items():
        if len(rs) == 1:
            out.append(rs[0])
            continue
        if any("scenarios" not in r for r in rs):
            raise ValueError(f"{k}: a result without its rounds cannot "
                             "be pooled")
        pooled = dict(rs[0], boots=0, rounds=0, scenarios=[])
        pooled.pop("summary", None)
        for r in rs:
            _pool(pooled, r)
        out.append(pooled)
    return out


def format_kernel(result):
    s = result.get("summary") or summarize(result)
    boots = result.get("boots", 1)
    lines = [f"== {result['kernel']}: {result['kind']} pair {' '.join(result['pair'])}, "
             f"{result['rounds']} processes x {result.get('reopen', 1)} opens "
             f"per scenario"
             + (f" over {boots} boots" if boots > 1 else "")
             + (" [SMOKE: figures meaningless]" if result.get("smoke") else "")]
    hdr = (f"{'scenario':40} {'op':6} {'vfio-pci':>10} {'vfmediate':>10} "
           f"{'ratio':>6} {'IQR':>13} {'95% CI':>13}  {'floor':>6} "
           f"{'floor CI':>13} {'target':>8} verdict")
    lines.append(hdr)
    floor = s.get("floor", {}).get("ops", {})
    for name, sc in s.items():
        if sc["group"] != "access":
            continue
        for op, o in sc["ops"].items():
            r = o["ratio"]
            f = floor.get(op, {}).get("ratio")
            ftxt = (f"{f['median']:6.3f} [{f['ci_lo']:.3f}-{f['ci_hi']:.3f}]"
                    if f else "")
            tgt, v = verdict(s, name, op)
            ret = o["ret"]
            note = f" ({ret})" if isinstance(ret, str) else ""
            lines.append(
                f"{sc['label'][:40]:40} {op:6} {_t(op, o['vfio_ns'])} "
                f"{_t(op, o['vfm_ns'])} {r['median']:6.3f} "
                f"[{r['p25']:.3f}-{r['p75']:.3f}] "
                f"[{r['ci_lo']:.3f}-{r['ci_hi']:.3f}]  {ftxt:>20} "
                f"{tgt:>8} {v}{note}")
    soft = [(n, sc) for n, sc in s.items() if sc["group"] == "software"]
    if soft:
        lines.append("software-only cost, ns: an access to an ignore rule (no "
                     "device access) against vfio-pci refusing a read of a "
                     "region the device lacks (system call and VFIO dispatch):")
        for name, sc in soft:
            o = sc["ops"]
            null = o.get("null", {}).get("vfio_ns")
            parts = []
            for op in ("pread", "pwrite"):
                if op not in o:
                    continue
                t = o[op]["vfm_ns"]
                extra = f" (+{t - null:.0f} over the refusal)" if null else ""
                parts.append(f"{op} {t:5.0f}{extra}")
            if null:
                parts.append(f"refusal {null:5.0f}")
            lines.append(f"  {sc['label'][:32]:32} " + ", ".join(parts))
    lines.append("tables (vfmediate):")
    for name in ("none", "r16", "r1024", "r1024c", "trap"):
        sc = s.get(name)
        if not sc:
            continue
        c = sc["compile_ns"]
        ctxt = (f"compile {c['median'] / 1000:7.1f} us "
                f"[IQR {c['p25'] / 1000:.1f}-{c['p75'] / 1000:.1f}]"
                if c and c["median"] else
                "compile       0 us (static pass-through table)")
        lines.append(f"  {sc['label'][:40]:40} {ctxt}, "
                     f"table {sc['table_bytes'] or 0} bytes")
    a = _applies(s)
    if a:
        lines.append(f"live apply: {a}")
    if "elapsed_s" in result:
        lines.append(f"({result['elapsed_s']:.0f} s in the guest)")
    return "\n".join(lines)


def _applies(s):
    """The live applies of the "applies" scenario, timed: one phrase."""
    a = s.get("applies", {}).get("apply_ns")
    if not a:
        return ""
    return (f"a change of 1 of {s['applies']['nrules']} rules applied in "
            f"{a['median'] / 1000:.0f} us [IQR {a['p25'] / 1000:.0f}-"
            f"{a['p75'] / 1000:.0f}] ({a['n']} applies, during accesses)")


def format_combined(results, markdown=False):
    """One row per scenario/op, a ratio column per kernel."""
    kernels = [r["kernel"] for r in results]
    sums = [r.get("summary") or summarize(r) for r in results]
    rows = []
    for name, sc in sums[0].items():
        if sc["group"] != "access" or sc["floor"]:
            continue
        for op in sc["ops"]:
            cells = []
            for s in sums:
                o = s.get(name, {}).get("ops", {}).get(op)
                f = s.get("floor", {}).get("ops", {}).get(op)
                if not o:
                    cells.append("-")
                    continue
                r = o["ratio"]
                tgt, v = verdict(s, name, op)
                cell = (f"{r['median']:.3f} [{r['p25']:.3f}-{r['p75']:.3f}]")
                if f:
                    cell += f" / floor {f['ratio']['median']:.3f}"
                if v:
                    cell += f" {v}"
                cells.append(cell)
            tgt = TARGETS.get((name, op))
            ttxt = ("" if not tgt else
                    f"<= {tgt[1]:.2f}" if tgt[0] == "max" else "1.00 +- noise")
            rows.append((sc["label"], op, cells, ttxt))
    if markdown:
        out = ["| scenario | op | " + " | ".join(kernels) + " | target |",
               "|---|---|" + "---|" * len(kernels) + "---|"]
        for label, op, cells, t in rows:
            out.append(f"| {label} | {op} | " + " | ".join(cells) + f" | {t} |")
        extra = []
        for k, s in zip(kernels, sums):
            parts = []
            for name in ("ignore1", "ignore16", "ignore1024"):
                o = s.get(name, {}).get("ops", {})
                if "pread" in o:
                    parts.append(f"{o['pread']['vfm_ns']:.0f}")
            null = s.get("ignore1", {}).get("ops", {}).get("null")
            comp = []
            # r1024c compiles at every open; r1024 only at the first.
            for name in ("r16", "r1024c" if "r1024c" in s else "r1024"):
                c = s.get(name, {}).get("compile_ns")
                tb = s.get(name, {}).get("table_bytes")
                if c:
                    comp.append(f"{s[name]['nrules']} rules: compile "
                                f"{c['median'] / 1000:.0f} us, table {tb} bytes")
            line = f"- {k}: "
            if parts:
                line += ("ignored 4-byte pread (no device access) with 1/16/1024 "
                         "rules: " + "/".join(parts) + " ns")
                if null:
                    line += (f" (vfio-pci's refusal of a bad region, i.e. the "
                             f"system call and VFIO alone: {null['vfio_ns']:.0f} ns)")
                line += "; "
            line += "no rules: no table (0 bytes); " + "; ".join(comp)
            a = _applies(s)
            if a:
                line += f"; live apply: {a}"
            extra.append(line)
        return "\n".join(out + [""] + extra)
    w = max(len(r[0]) for r in rows) if rows else 10
    out = [f"{'scenario':{w}} {'op':6} " +
           " ".join(f"{k:44}" for k in kernels) + " target"]
    for label, op, cells, t in rows:
        out.append(f"{label:{w}} {op:6} " + " ".join(f"{c:44}" for c in cells)
                   + f" {t}")
    return "\n".join(out)


def misses(results):
    """'kernel: scenario op' of every target missed."""
    out = []
    for r in results:
        s = r.get("summary") or summarize(r)
        for name, op in TARGETS:
            if name in s and op in s[name]["ops"] and \
                    verdict(s, name, op)[1] == "MISS":
                out.append(f"{r['kernel']}: {s[name]['label']} {op}")
    return out


def main(argv):
    md = "--markdown" in argv
    argv = [a for a in argv if a != "--markdown"]
    commit = None
    if "--commit" in argv:
        i = argv.index("--commit")
        if i + 1 >= len(argv):
            print("report.py: --commit needs an ID", file=sys.stderr)
            return 2
        commit = argv[i + 1]
        del argv[i:i + 2]
    files = argv
    if not files:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    results = []
    for fn in files:
        with open(fn) as f:
            results.append(json.load(f))
    try:
        results = pool_boots(results)
    except ValueError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 2
    if commit:
        boots = max(r.get("boots", 1) for r in results)
        per = f" ({boots} boots per kernel)" if boots > 1 else ""
        print(f"`make bench` at commit {commit}{per}:\n" if md else
              f"measured at commit {commit}{per}")
    if not md:
        for r in results:
            print(format_kernel(r))
            print()
    print(format_combined(results, markdown=md))
    missed = misses(results)
    for m in missed:
        print(f"MISS: {m}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
