# SPDX-License-Identifier: GPL-2.0
"""tests/bench/report.py judges targets: a missed one fails the run and
is named; the commit measured heads the tables."""
import json
import os
import subprocess
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REPORT = os.path.join(TOP, "tests", "bench", "report.py")


def ratio(m, lo, hi):
    return {"median": m, "ci_lo": lo, "ci_hi": hi, "p25": lo, "p75": hi}


def result(trap):
    """A result file as run.py writes it, with its summary given."""
    def op(r):
        return {"ratio": r, "vfio_ns": 1000.0, "vfm_ns": 1000 * r["median"],
                "ret": 4}

    summary = {
        "floor": {"label": "floor", "group": "access", "floor": True,
                  "nrules": 0, "compile_ns": None, "table_bytes": 0,
                  "ops": {"pread": op(ratio(1.0, 0.999, 1.001))}},
        "trap": {"label": "trap to the nop mediator", "group": "access",
                 "floor": False, "nrules": 1, "compile_ns": None,
                 "table_bytes": 0, "ops": {"pread": op(trap)}},
    }
    return {"kernel": "6.12.0-test", "kind": "edu", "pair": ["a", "b"],
            "rounds": 24, "reopen": 5, "summary": summary}


def run(tmp_path, trap, *args):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(result(trap)))
    return subprocess.run([sys.executable, REPORT, *args, str(f)],
                          capture_output=True, text=True, timeout=60)


def test_met_target_exits_0(tmp_path):
    p = run(tmp_path, ratio(1.05, 1.03, 1.07), "--commit", "abc123")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("measured at commit abc123\n")
    assert "trap to the nop mediator pread" in " ".join(p.stdout.split())
    assert p.stderr == ""


def test_missed_target_exits_1_and_says_which(tmp_path):
    p = run(tmp_path, ratio(1.20, 1.15, 1.25))
    assert p.returncode == 1
    assert p.stderr == "MISS: 6.12.0-test: trap to the nop mediator pread\n"


def test_within_the_interval_is_not_a_miss(tmp_path):
    # The median beyond the target, its interval not wholly: "ok?".
    p = run(tmp_path, ratio(1.12, 1.08, 1.16))
    assert p.returncode == 0, p.stderr
    assert "ok?" in p.stdout


def test_markdown_heading_names_the_commit(tmp_path):
    p = run(tmp_path, ratio(1.05, 1.03, 1.07), "--markdown",
            "--commit", "abc123-dirty")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[0] == "`make bench` at commit abc123-dirty:"
    assert lines[2].startswith("| scenario | op | 6.12.0-test |")


def boot(kernel, trap_ratios):
    """A result with its rounds, as run.py writes it: one round per
    ratio, a run each, of the trap scenario's pread (and the floor's)."""
    def rnd(r):
        run = {"ops": {"pread": {"ratio": {"med": r},
                                 "A": {"med": 1000.0 * r, "ret": 4},
                                 "B": {"med": 1000.0}}}}
        return {"a": 0, "b": 1, "a_pos": 0, "runs": [run], "cfs": None}

    def scenario(name, label, floor, ratios):
        return {"name": name, "label": label, "group": "access",
                "floor": floor, "nrules": 0 if floor else 1,
                "ops": ["pread"], "audit_hits": None if floor else 10,
                "errors": [], "rounds": [rnd(r) for r in ratios]}

    return {"kernel": kernel, "kind": "edu", "pair": ["a", "b"],
            "rounds": len(trap_ratios), "reopen": 1,
            "scenarios": [
                scenario("floor", "floor", True, [1.0] * len(trap_ratios)),
                scenario("trap", "trap to the nop mediator", False,
                         trap_ratios)]}


def test_boots_of_a_kernel_are_pooled(tmp_path):
    """BOOTS=2: two files of one kernel make one column, whose median is
    over both boots' rounds; the heading says how many boots."""
    files = []
    for i, ratios in enumerate(([1.00] * 5, [1.20] * 20)):
        f = tmp_path / f"k.boot{i + 1}.json"
        f.write_text(json.dumps(boot("6.12.0-test", ratios)))
        files.append(str(f))
    p = subprocess.run([sys.executable, REPORT, "--markdown", "--commit",
                        "abc123", *files], capture_output=True, text=True,
                       timeout=60)
    # 25 rounds, 20 of them at 1.20: the pooled median and its whole
    # interval are 1.20, a miss that the first boot alone would not show
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "`make bench` at commit abc123 (2 boots per kernel):"
    assert lines[2] == "| scenario | op | 6.12.0-test | target |"
    row = [ln for ln in lines if ln.startswith("| trap to the nop")]
    assert len(row) == 1 and "1.200" in row[0], lines
    p = subprocess.run([sys.executable, REPORT, files[0]],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "over 2 boots" not in p.stdout and "1.000" in p.stdout


def test_a_summary_alone_cannot_be_pooled(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result(ratio(1.05, 1.03, 1.07))))
    b.write_text(json.dumps(boot("6.12.0-test", [1.0])))
    p = subprocess.run([sys.executable, REPORT, str(a), str(b)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "cannot be pooled" in p.stderr
