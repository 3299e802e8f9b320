# SPDX-License-Identifier: GPL-2.0
"""tests/vm/check-skips: a skip that tests/expected-skips does not allow
for the kernel fails, naming the test and its message; allowed ones
pass."""
import os
import subprocess

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(TOP, "tests", "vm", "check-skips")

XML = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="2"
 tests="3">
<testcase classname="tests.test_failslab" name="test_failslab[open]"
 time="0.1"><skipped type="pytest.skip" message="no failslab">x</skipped>
</testcase>
<testcase classname="tests.test_policy_bypass" name="test_rom_rules[deny]"
 time="0.1"><skipped type="pytest.skip" message="igb has no ROM">x</skipped>
</testcase>
<testcase classname="tests.test_policy" name="test_ok" time="0.1"/>
</testsuite></testsuites>
"""


def run(tmp_path, kernel, xml=XML):
    f = tmp_path / "r.xml"
    f.write_text(xml)
    return subprocess.run([CHECK, kernel, str(f)], capture_output=True,
                          text=True, timeout=60)


def test_unexpected_skip_fails_and_is_named(tmp_path):
    p = run(tmp_path, "6.12.95+deb12-amd64")
    assert p.returncode == 1
    assert p.stdout.splitlines() == [
        "unexpected skip on 6.12.95+deb12-amd64: "
        "tests/test_policy_bypass.py::test_rom_rules[deny]: igb has no ROM",
        "skips: 2, 1 not in tests/expected-skips"]


def test_a_skip_allowed_on_one_kernel_only(tmp_path):
    # failslab may skip on Debian's kernels, not on the debug kernel.
    only = XML.replace('skipped="2"', 'skipped="1"').replace(
        '<skipped type="pytest.skip" message="igb has no ROM">x</skipped>', "")
    assert run(tmp_path, "6.1.0-50-amd64", only).stdout == \
        "skips: 1, as expected\n"
    p = run(tmp_path, "6.12.95-vfm-debug", only)
    assert p.returncode == 1
    assert "test_failslab.py::test_failslab[open]: no failslab" in p.stdout
