#!/usr/bin/env python3
"""PyTorch CPU fp32 conv3d / conv_transpose3d on the rows of `nephrod bench ops --json`.

Reads nephrod's JSON lines (file argument or stdin), runs each row's configuration with
torch.nn.functional at the same thread count (torch.set_num_threads), and prints one table:
nephrod ms, GFLOP/s, torch ms, GFLOP/s, ratio (torch ms / nephrod ms; > 1 means nephrod is
faster). With --json, prints one JSON object per row instead.

With --nephrod BIN, each row is measured again by `BIN bench ops --only <row>` right before
PyTorch runs it, alternating --rounds times (nephrod, torch, nephrod, torch, ...), and the
median over rounds is reported for both: on a shared, noisy machine the two sides then see the
same load. Without it, the nephrod numbers of the input rows are used as they are.

Timing: one warm-up call, then at least --repeats runs (more for fast rows, up to ~1 s), the
median reported — the same rule as nephrod's. Inputs are uniform in [-0.5, 0.5).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def bench(fn, repeats):
    fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats or (len(samples) < 50 and time.perf_counter() - start < 1.0):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def run_row(row, repeats):
    x_shape = row["x"]
    c_in, oc, k, s, p = x_shape[1], row["out_channels"], row["kernel"], row["stride"], row["padding"]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(x_shape, generator=g) - 0.5
    b = torch.rand(oc, generator=g) - 0.5
    with torch.inference_mode():
        if row["op"] == "conv3d":
            w = torch.rand((oc, c_in, k, k, k), generator=g) - 0.5
            fn = lambda: F.conv3d(x, w, b, stride=s, padding=p)
            out = fn()
            macs = out.numel() * c_in * k ** 3
        elif row["op"] == "conv_transpose3d":
            w = torch.rand((c_in, oc, k, k, k), generator=g) - 0.5
            fn = lambda: F.conv_transpose3d(x, w, b, stride=s, padding=p)
            out = fn()
            macs = x.numel() * oc * k ** 3
        else:
            raise ValueError(f"unknown op {row['op']}")
        secs = bench(fn, repeats)
    return secs * 1e3, 2 * macs / secs / 1e9


def nephrod_row(binary, row, threads, repeats, extra):
    """One `nephrod bench ops` measurement of `row` (matched by its op and shape text)."""
    extra = extra.split()
    # The row filter is ours: drop the caller's `--only X`.
    while "--only" in extra:
        i = extra.index("--only")
        del extra[i:i + 2]
    cmd = [binary, "bench", "ops", "--json", "--threads", str(threads),
           "--only", f"{row['op']} {row['shape']}"] + extra
    if "--repeats" not in extra:
        cmd += ["--repeats", str(repeats)]
    if row.get("isa") and "--isa" not in extra:
        cmd += ["--isa", row["isa"]]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    match = [r for r in found if r["op"] == row["op"] and r["shape"] == row["shape"]]
    if len(match) != 1:
        sys.exit(f"nephrod did not report exactly one row for {row['op']} {row['shape']}")
    return match[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="?", help="nephrod bench ops --json output (default: stdin)")
    ap.add_argument("--threads", type=int, help="default: the rows' thread count")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--nephrod", help="nephrod binary: re-measure each row alternating with torch")
    ap.add_argument("--rounds", type=int, default=3, help="alternations per row with --nephrod")
    ap.add_argument("--nephrod-args", default="", help="extra `bench ops` flags with --nephrod")
    args = ap.parse_args()
    src = open(args.rows) if args.rows else sys.stdin
    rows = [json.loads(line) for line in src if line.strip().startswith("{")]
    if not rows:
        sys.exit("no rows: pass the output of `nephrod bench ops --json`")
    threads = args.threads or rows[0]["threads"]
    torch.set_num_threads(threads)
    if not args.json:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
              f"mkldnn {torch.backends.mkldnn.is_available()}; nephrod isa {rows[0].get('isa', '?')}")
        print(f"{'op':<17} {'shape':<36} {'thr':>3} {'nephrod ms':>10} {'GFLOP/s':>8} "
              f"{'torch ms':>10} {'GFLOP/s':>8} {'ratio':>6}")
    ratios = []
    for row in rows:
        if args.nephrod:
            ours, theirs = [], []
            for _ in range(max(1, args.rounds)):
                ours.append(nephrod_row(args.nephrod, row, threads, args.repeats, args.nephrod_args))
                theirs.append(run_row(row, args.repeats))
            row = dict(row, ms=statistics.median(r["ms"] for r in ours),
                       gflops=statistics.median(r["gflops"] for r in ours))
            ms = statistics.median(t[0] for t in theirs)
            gflops = statistics.median(t[1] for t in theirs)
        else:
            ms, gflops = run_row(row, args.repeats)
        ratio = ms / row["ms"]
        ratios.append(ratio)
        if args.json:
            print(json.dumps({**row, "torch_ms": ms, "torch_gflops": gflops, "ratio": ratio}))
        else:
            print(f"{row['op']:<17} {row['shape']:<36} {threads:>3} {row['ms']:>10.2f} "
                  f"{row['gflops']:>8.1f} {ms:>10.2f} {gflops:>8.1f} {ratio:>5.2f}×")
    if not args.json:
        geo = statistics.geometric_mean(ratios)
        print(f"ratio = torch ms / nephrod ms (> 1: nephrod faster); min {min(ratios):.2f}×, "
              f"geometric mean {geo:.2f}×")


if __name__ == "__main__":
    main()
