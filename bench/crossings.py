#!/usr/bin/python3
"""bench/crossings.py: which of the daemon's functions one unary Get runs,
and how often a call crosses from one source file into another. Not a
test and not a speed figure: a reading aid for the layering (README,
"Source layout").

    /usr/bin/python3 bench/crossings.py [--alpcrund PATH] [--src DIR]

Starts the daemon (PATH, default ./alpcrund; DIR, the source tree it was
built from, default this one), stores a 1 KiB entry and reads it once on a
connection that stays open, then attaches gdb with a breakpoint on every
function of the daemon's own files and reads it once more. Each call is
printed as "caller-file -> callee-file function" (a caller in a library,
nghttp2 or libevent, shows as its library); the summary counts the calls
whose caller and callee are in different files of ours, and those that
come from a library.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

GDB_SCRIPT = r'''
import gdb, os
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set breakpoint pending off")
for f in os.environ["XF_FILES"].split():
    try:
        gdb.execute("rbreak %s:." % f, to_string=True)
    except gdb.error:
        pass
out = open(os.environ["XF_OUT"], "w")

def where(frame):
    if frame is None:
        return "?"
    sal = frame.find_sal()
    if sal.symtab is not None:
        return sal.symtab.filename
    so = gdb.solib_name(frame.pc())
    return os.path.basename(so) if so else "?"

def on_stop(ev):
    if not isinstance(ev, gdb.BreakpointEvent):
        return
    fr = gdb.newest_frame()
    out.write("%s -> %s %s\n" % (where(fr.older()), where(fr), fr.name()))
    out.flush()

gdb.events.stop.connect(on_stop)
open(os.environ["XF_READY"], "w").close()
while True:
    try:
        gdb.execute("continue")
    except gdb.error:
        break
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpcrund", default="./alpcrund")
    ap.add_argument("--src", default=lib.TOP_SRCDIR)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="crossings.")
    lib.gen_stubs(os.path.join(work, "gen"))
    files = []
    for d, _, names in os.walk(a.src):
        if "/build" in d or "/tests" in d or "/bench" in d or "/gen" in d:
            continue
        files += [os.path.relpath(os.path.join(d, n), a.src) for n in names
                  if n.endswith(".c") and n not in ("alpcrunctl.c", "mkman.c")]
    d = lib.Daemon(os.path.abspath(a.alpcrund), work, "d",
                   extra="sweep_interval 1h\nidle_timeout 1h\n")
    st = lib.stub(d.addr)
    st.SetSharedData(lib.sd("xf", 1, b"x" * 1024))
    st.GetSharedData(lib.sd("xf", ttl=0))
    out, ready = os.path.join(work, "calls"), os.path.join(work, "ready")
    script = os.path.join(work, "xf.py")
    with open(script, "w") as f:
        f.write(GDB_SCRIPT)
    env = dict(os.environ, XF_FILES=" ".join(os.path.basename(x) for x in files),
               XF_OUT=out, XF_READY=ready)
    g = subprocess.Popen(["gdb", "-q", "-batch", "-p", str(d.pid), "-x", script],
                         env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not os.path.exists(ready):
        if time.monotonic() > deadline or g.poll() is not None:
            raise SystemExit("gdb did not start")
        time.sleep(0.2)
    time.sleep(1)
    st.GetSharedData(lib.sd("xf", ttl=0), timeout=120)
    time.sleep(1)
    d.proc.kill()
    g.wait(timeout=120)
    d.proc.wait()
    ours = set(os.path.basename(x) for x in files)
    # The layer of each file, from its folder (tests/layering's order);
    # a flat tree (before the layers) has none.
    order = ["src/util", "src/conf", "src/h2", "src/grpc", "src/svc", "src"]
    rank = {}
    for x in files:
        folder = os.path.dirname(x)
        if folder == "backends":
            folder = "src/svc"
        if folder in order and folder != "src":
            rank[os.path.basename(x)] = order.index(folder)
    calls = [line.split() for line in open(out) if line.strip()]
    cross = lib_in = up = 0
    pairs = {}
    for c in calls:
        caller, callee = os.path.basename(c[0]), os.path.basename(c[2])
        mark = ""
        if caller in ours and caller != callee:
            cross += 1
            mark = "  <- crosses"
            if rank.get(callee, -1) > rank.get(caller, 99):
                up += 1
                mark += " upward (a registered callback)"
            pairs[(caller, callee)] = pairs.get((caller, callee), 0) + 1
        elif caller not in ours:
            lib_in += 1
            mark = "  <- from a library"
        print("%-22s -> %-18s %s%s" % (caller, callee, c[3], mark))
    print()
    for (a_, b_), k in sorted(pairs.items(), key=lambda kv: -kv[1]):
        back = pairs.get((b_, a_), 0)
        print("%3d  %s -> %s%s" % (k, a_, b_, "  (and %d back)" % back
                                   if back else ""))
    print("%d calls into the daemon's functions; %d cross from one of its "
          "files into another; %d come from a library" %
          (len(calls), cross, lib_in))
    if rank:
        print("%d of the crossings go to a higher layer, each through a "
              "callback registered downward" % up)


if __name__ == "__main__":
    main()
