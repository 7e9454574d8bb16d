"""The manual pages: clean under `mandoc -T lint`, and alpcrund.conf(5)
lists every directive the daemon knows (it is generated from the same
table; this checks that the build really used it)."""
import os
import re
import shutil
import subprocess

import alptest


def man_dir(tmp_path):
    d = tmp_path / "man"
    d.mkdir()
    shutil.copy(os.path.join(alptest.TOP_SRCDIR, "man", "alpcrund.8"), d)
    shutil.copy(os.path.join(alptest.TOP_SRCDIR, "man", "alpcrunctl.1"), d)
    shutil.copy(os.path.join(alptest.TOP_BUILDDIR, "man", "alpcrund.conf.5"), d)
    return d


def test_mandoc_lint_clean(tmp_path):
    d = man_dir(tmp_path)
    r = subprocess.run(["mandoc", "-T", "lint", "alpcrund.8", "alpcrund.conf.5",
                        "alpcrunctl.1"],
                       cwd=d, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr


def test_conf5_lists_every_directive(tmp_path):
    page = (man_dir(tmp_path) / "alpcrund.conf.5").read_text()
    listed = set(re.findall(r"^\.It Ic (\w+)", page, re.M))
    dump = subprocess.run([alptest.ALPCRUND, "-t", "-v", "-c", "/dev/null"],
                          capture_output=True, text=True, check=True).stdout
    known = set(re.findall(r"^#?\s*(\w+)[ \t]", dump, re.M))
    assert known, dump
    assert known <= listed, "missing from alpcrund.conf.5: %s" % sorted(known - listed)
