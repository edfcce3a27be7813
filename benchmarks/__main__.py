"""The benchmark suite: `python -m benchmarks` runs every benchmark, prints one table of ratios and
writes benchmarks/RESULTS.md with the machine it ran on.

    python -m benchmarks [--quick] [--only cams,extra,metrics,fcam,app,targets,pages] [--out benchmarks/RESULTS.md]

Each row is a ratio measured in ONE process on the same inputs (each benchmark is its own
script, run here as a subprocess so one's memory and threads never colour another's):

1. bench_cams.py: our six gradient maps from one pass against pytorch-grad-cam and torchcam
   computing each method separately, and against a bare forward + autograd.grad (the floor);
2. bench_extra_passes.py: Score-CAM and Smooth Grad-CAM++ against both libraries, with peak memory;
3. bench_cams.py: Gaussian against bilinear upsampling and against eq. 4's direct double sum;
4. bench_metrics.py: MaxBoxAcc/V2 and PxAP against the per-threshold loop at 1000 thresholds;
5. bench_fcam.py: F-CAM inference against the CAM it replaces;
6. bench_app_latency.py: a sigma slider move and a method switch in a real browser;
7. bench_targets.py: transformers' token layers and segmentation / detection targets against
   pytorch-grad-cam: agreement (r) and time for equal work;
8. bench_pages.py: how long each page takes to answer when opened (warm), in a real browser.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.common import describe_machine, format_table, machine_info  # noqa: E402

SUITE = {
    "cams": ("bench_cams.py", [], ["--repeats", "3"]),
    "extra": ("bench_extra_passes.py", [], ["--repeats", "1", "--smooth-batch", "4"]),
    "metrics": ("bench_metrics.py", [], ["--images", "100"]),
    "fcam": ("bench_fcam.py", [], ["--repeats", "3"]),
    "app": ("bench_app_latency.py", [], ["--moves", "10"]),
    "targets": ("bench_targets.py", [], ["--repeats", "1"]),
    "pages": ("bench_pages.py", [], ["--rounds", "1"]),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(SUITE), help=f"comma-separated subset of {', '.join(SUITE)}")
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier numbers)")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--reuse", action="store_true",
                   help="summarise the JSON results already in benchmarks/results/ instead of running again")
    return p.parse_args(argv)


RESULTS_DIR = HERE / "results"


def run_one(name: str, quick: bool, folder: Path, reuse: bool = False) -> tuple[dict | None, str, float]:
    script, args, quick_args = SUITE[name]
    out = folder / f"{name}.json"
    log = folder / f"{name}.txt"
    if reuse and out.is_file():
        return json.loads(out.read_text()), log.read_text() if log.is_file() else "", 0.0
    command = [sys.executable, str(HERE / script), *args, *(quick_args if quick else []), "--json", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    seconds = time.perf_counter() - start
    text = done.stdout + (f"\n[stderr]\n{done.stderr[-3000:]}" if done.returncode else "")
    log.write_text(text)
    if done.returncode != 0 or not out.is_file():
        return None, text, seconds
    return json.loads(out.read_text()), text, seconds


def rows_from(name: str, result: dict) -> list[list[str]]:
    """(measurement, ratio, target, verdict) rows of one benchmark's JSON."""
    rows = []
    if name == "cams":
        for h in result["headline"].values():
            rows.append([h["what"], f"{h['ratio']:.3f}", f"<= {h['target']}", h["verdict"]])
        derived = result["cams"]["derived"]
        timings = result["cams"]["timings"]
        ours = next(v for k, v in timings.items() if k.startswith("ours: ") and "one pass" in k)
        for key, value in derived.items():
            if key.startswith("torchcam:"):
                rows.append([f"our maps / {key}", f"{ours['median_s'] / value['median_s']:.3f}", "<= 1", ""])
        ups = result.get("upsampling") or {}
        for size, group in ups.items():
            per_map = group["per_map"]  # per map: the direct double sum runs fewer maps per call
            gauss = per_map["gaussian (separable, explorer.upsample)"]["median_s"]
            bilinear = per_map["bilinear (explorer.upsample)"]["median_s"]
            direct = next(v["median_s"] for k, v in per_map.items() if "double sum" in k)
            if size != "14x14->224, batch 64":  # that one is the headline row (B) above
                rows.append([f"Gaussian / bilinear, {size}", f"{gauss / bilinear:.3f}", "<= 1", ""])
            rows.append([f"Gaussian / eq. 4 direct double sum, {size}", f"{gauss / direct:.4f}", "< 1", ""])
    elif name == "metrics":
        box, pxap = result["box"], result["pxap"]
        rows.append([f"MaxBoxAcc + MaxBoxAccV2 at {result['thresholds']} thresholds: per-threshold OpenCV loop / ours "
                     f"({result['images']} maps)", f"{box['ratio_vs_reference_style']:.1f}x faster",
                     f">= {box['target']:g}x", "PASS" if box["ratio_vs_reference_style"] >= box["target"] else "MISS"])
        rows.append([f"PxAP: per-threshold loop / ours (identical: {pxap['identical']})",
                     f"{pxap['loop_timing']['median_s'] / pxap['ours_timing']['median_s']:.1f}x faster", "", ""])
    elif name == "pages":
        for title, page in result["pages"].items():
            rows.append([f"open {title} (warm, median of {page['n']}, real browser)", f"{page['median_s']:.2f} s",
                         f"<= {result['target_s']:g} s", page["verdict"]])
    elif name == "app":
        if "live" in result:
            live = result["live"]
            rows.append([f"live sigma: slider input -> repainted tiles in the browser (median / p95 over {live['n']}; "
                         f"server round trip below)", f"{live['median_ms']:.0f} / {live['p95_ms']:.0f} ms",
                         "median <= 50 ms", live.get("verdict", "")])
        for key in ("sigma", "method"):
            s = result[key]
            what = "sigma slider move -> repainted grid" if key == "sigma" else "method switch -> redrawn heatmap"
            rows.append([f"{what} (median / p95 over {s['n']}, real browser)",
                         f"{s['median_ms']:.0f} / {s['p95_ms']:.0f} ms", "median <= 300 ms" if key == "sigma" else "",
                         s.get("verdict", "")])
    else:
        for key, h in result.get("headline", {}).items():
            extra = ""
            if "ours_peak_mb" in h:
                extra = f" (peak {h['ours_peak_mb']:.0f} MB vs {h['their_peak_mb']:.0f} MB)"
            rows.append([f"{key}{extra}", f"{h['ratio']:.3f}", f"<= {h['target']}", h["verdict"]])
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SUITE]
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITE)}", file=sys.stderr)
        return 2
    machine = describe_machine(machine_info())
    print(machine)
    table, logs = [], {}
    RESULTS_DIR.mkdir(exist_ok=True)
    for name in chosen:
        print(f"running {SUITE[name][0]} ...", flush=True)
        result, text, seconds = run_one(name, args.quick, RESULTS_DIR, args.reuse)
        logs[name] = text
        if result is None:
            table.append([f"{SUITE[name][0]} failed (see its output below)", "", "", "FAILED"])
            continue
        try:
            table.extend(rows_from(name, result))
        except (KeyError, StopIteration, TypeError) as exc:  # a changed JSON layout: say so, go on
            table.append([f"{SUITE[name][0]}: its results could not be summarised ({exc!r})", "", "", "FAILED"])
        print(f"  done in {seconds:.0f} s")
    headers = ["measurement", "ratio / value", "target", "verdict"]
    print(format_table(headers, table))
    when = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    ran = (f"Summarised on {when} from the results kept in benchmarks/results/ (`--reuse`): each benchmark ran "
           "on the machine and at the load its own output below names." if args.reuse else
           f"`python -m benchmarks{' --quick' if args.quick else ''}` on {when}.\n\nMachine: {machine}")
    lines = ["# Benchmark results", "", ran, "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
    lines += ["", "Ratios below 1 mean ours takes less time. Each benchmark's full output:", ""]
    for name, text in logs.items():
        lines += [f"## {SUITE[name][0]}", "", "```", text.strip(), "```", ""]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
