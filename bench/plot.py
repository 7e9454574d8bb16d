#!/usr/bin/python3
"""bench/plot.py: pictures of the benchmarks' figures, with gnuplot
(Debian's gnuplot-nox); it runs no benchmark itself.

    bench/plot.py fanout RESULTS.jsonl OUT.png
    bench/plot.py sizes SIZES.json OUT.png

fanout: RESULTS.jsonl holds the --json line of bench/fanout.py runs, one
per number of hosts, e.g.

    for h in 4 8 16 32; do
        flock /tmp/alpcrund-bench.lock /usr/bin/python3 bench/fanout.py \\
            --hosts $h --topologies star,chain,tree --json | tail -n 1
    done > /tmp/fanout.jsonl

and the plot is the time until the last host has the level against the
number of hosts, one line per topology and one for T1 (one host alone).

sizes: SIZES.json is what bench/run --only 7 writes (medians per path and
payload size); the plot is throughput and the server's CPU per GiB against
the payload size, one line per path (alpcrund's and Redis's).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile


def fanout(results, out):
    runs = sorted((json.loads(line) for line in open(results) if line.strip()),
                  key=lambda r: r["hosts"])
    if not runs:
        raise SystemExit("plot.py: no runs in %s" % results)
    tops = []
    for r in runs:
        for t in r["topologies"]:
            if t not in tops:
                tops.append(t)
    work = tempfile.mkdtemp(prefix="alpplot-")
    try:
        data = os.path.join(work, "fanout.dat")
        with open(data, "w") as f:
            f.write("# hosts T1 " + " ".join(tops) + "\n")
            for r in runs:
                row = [str(r["hosts"]), str(r["T1_s"])]
                row += [str(r["topologies"][t]["last_host_s"]) if t in r["topologies"]
                        else "NaN" for t in tops]
                f.write(" ".join(row) + "\n")
        r0 = runs[0]
        plots = ['"%s" using 1:2 with linespoints title "one host alone (T1)"' % data]
        plots += ['"%s" using 1:%d with linespoints title "%s"' % (data, i + 3, t)
                  for i, t in enumerate(tops)]
        script = "\n".join([
            "set terminal pngcairo size 900,600 font ',11'",
            "set output '%s'" % out,
            "set title 'A new %d MiB level reaching every host, %d Mbit/s links'"
            % (r0["size_mib"], r0["rate_mbit"]),
            "set xlabel 'hosts'", "set ylabel 'seconds until the last host has it'",
            "set logscale y", "set grid", "set key top left",
            "set xtics (%s)" % ", ".join(str(r["hosts"]) for r in runs),
            "plot " + ", ".join(plots), ""])
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sizes(results, out):
    r = json.load(open(results))
    paths = list(r["paths"])
    work = tempfile.mkdtemp(prefix="alpplot-")
    try:
        data = os.path.join(work, "sizes.dat")
        with open(data, "w") as f:
            f.write("# bytes " + " ".join('"%s"' % p for p in paths) + "\n")
            for n in r["sizes"]:
                row = [str(n)]
                for field in ("mibps", "cpu_s_per_gib"):
                    row += [str(r["paths"][p][str(n)][field])
                            if r["paths"][p][str(n)][field] is not None else "NaN"
                            for p in paths]
                f.write(" ".join(row) + "\n")
        tics = ", ".join('"%s" %d' % ("%d MiB" % (n >> 20) if n >= 1 << 20
                                      else "%d KiB" % (n >> 10), n) for n in r["sizes"])

        def lines(first):
            return ", ".join('"%s" using 1:%d with linespoints title "%s"'
                             % (data, first + i, p) for i, p in enumerate(paths))
        script = "\n".join([
            "set terminal pngcairo size 1200,520 font ',11'",
            "set output '%s'" % out,
            "set multiplot layout 1,2 title 'By payload size, loopback, 4 connections "
            "x 4 streams (medians of %d rounds)'" % r["rounds"],
            "set logscale xy", "set grid", "set key bottom right",
            "set xtics (%s)" % tics, "set xlabel 'payload'",
            "set ylabel 'MiB/s'", "set title 'throughput'",
            "plot " + lines(2),
            "set key top right", "set ylabel 'server CPU s per GiB'",
            "set title 'server CPU per GiB moved'",
            "plot " + lines(2 + len(paths)),
            "unset multiplot", ""])
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    modes = {"fanout": fanout, "sizes": sizes}
    if len(sys.argv) != 4 or sys.argv[1] not in modes:
        raise SystemExit(__doc__.strip().split("\n\n")[1])
    if shutil.which("gnuplot") is None:
        raise SystemExit("plot.py: gnuplot missing (apt-get install gnuplot-nox)")
    modes[sys.argv[1]](sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
