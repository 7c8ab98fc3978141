#!/usr/bin/env python3
"""Puts several runs of scripts/study.sh (one per seed) side by side: the main
table's numbers of each model per seed, their mean and spread, and each
method's change against its own seed's pre-trained model, so that a
difference can be told from the noise between seeds.

Usage: python3 scripts/study_seeds.py OUT_DIR [OUT_DIR ...] [--output FILE.md]
Every number is read from the runs' stored job reports (as study_report.py
reads them)."""
import argparse
import json
import math
import os
import sys

METHODS = ["contrastive", "self-kd", "hycd-align", "rafa", "hycd", "clip-refine"]
VARIANTS = ["test", "v2", "a", "r", "sketch"]


def load(out, path):
    with open(os.path.join(out, path)) as f:
        return json.load(f)


def metrics_of(report):
    """The main table's numbers of one evaluation report."""
    tasks = {t["name"]: t["metrics"] for t in report.get("tasks", [])}

    def top1(variants):
        v = [m["top1"] for name, m in tasks.items() if "top1" in m and name.rsplit("-", 1)[-1] in variants]
        return sum(v) / len(v) if v else float("nan")

    rt = tasks.get("retrieval", {})
    nan = float("nan")
    return {"top1_test": top1(["test"]), "top1_all": top1(VARIANTS), "t2i_r1": rt.get("text_to_image_r1", nan),
            "i2t_r1": rt.get("image_to_text_r1", nan), "gap": rt.get("modality_gap", nan)}


def run_of(out):
    """{model: metrics} and the seed of one study directory."""
    models = {"pre-trained": metrics_of(load(out, "pretrain.json").get("eval_report", {}))}
    for p in load(out, "sweep-methods.json")["points"]:
        job = load(out, "jobs/%s.json" % p["job_id"])
        models[p["values"]["method"]] = metrics_of(job.get("eval_report", {}))
    seed = load(out, "world/world.json").get("seed", "?")
    return seed, models


def mean_sd(values):
    v = [x for x in values if x == x]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else float("nan")
    return m, sd


COLUMNS = [("top1_test", "mean zero-shot top-1, test (%)", True), ("top1_all", "mean zero-shot top-1, all variants (%)", True),
           ("t2i_r1", "T2I R@1 (%)", True), ("i2t_r1", "I2T R@1 (%)", True), ("gap", "modality gap", False)]


def fmt(v, pct, signed=False):
    if v != v:
        return "-"
    v = 100 * v if pct else v
    return ("%+.1f" if signed else "%.1f") % v if pct else ("%+.4f" if signed else "%.4f") % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="OUT_DIR of scripts/study.sh, one per seed")
    ap.add_argument("--output", help="write the markdown here instead of stdout")
    args = ap.parse_args()
    runs = []
    for out in args.runs:
        try:
            runs.append(run_of(out))
        except (OSError, KeyError, ValueError) as e:
            sys.exit("study_seeds: %s is not a finished study.sh run: %s" % (out, e))
    seeds = [str(s) for s, _ in runs]
    lines = []
    w = lines.append
    w("# The study over seeds %s" % ", ".join(seeds))
    w("")
    w("Per seed, then the mean ± standard deviation over the %d seeds." % len(runs))
    for key, title, pct in COLUMNS:
        w("")
        w("## %s" % title)
        w("")
        w("| model | " + " | ".join("seed %s" % s for s in seeds) + " | mean ± sd |")
        w("|---|" + "---|" * (len(seeds) + 1))
        for model in ["pre-trained"] + METHODS:
            vals = [m.get(model, {}).get(key, float("nan")) for _, m in runs]
            mu, sd = mean_sd(vals)
            w("| %s | %s | %s ± %s |" % (model, " | ".join(fmt(v, pct) for v in vals), fmt(mu, pct), fmt(sd, pct)))
    w("")
    w("## Change against the pre-trained model of the same seed")
    w("")
    w("| method | " + " | ".join("Δ %s" % title for _, title, _ in COLUMNS) + " |")
    w("|---|" + "---|" * len(COLUMNS))
    for model in METHODS:
        cells = []
        for key, _, pct in COLUMNS:
            deltas = [m.get(model, {}).get(key, float("nan")) - m["pre-trained"][key] for _, m in runs]
            mu, sd = mean_sd(deltas)
            cells.append("%s ± %s (%s)" % (fmt(mu, pct, True), fmt(sd, pct), ", ".join(fmt(d, pct, True) for d in deltas)))
        w("| %s | %s |" % (model, " | ".join(cells)))
    w("")
    w("Accuracies in percentage points; per-seed changes in parentheses.")
    text = "\n".join(lines) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
