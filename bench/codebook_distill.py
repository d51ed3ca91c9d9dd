"""Codebook fine-tuning by distillation on the ImageNet release: bits 6, 5, 4 and widths to a byte budget.

Run by hand; results go to BENCHMARKS.md with the machine, date and command. Not a test.

The 500 sample photos are split in two halves (sorted file names, alternating: --out/halves/a
and b). Each setting is run twice by sqznet-compress: distil on one half (no labels used), score
on the other, then the other way round; pooled, every photo is scored once by a model that never
saw it. Rows per setting: file bytes; top-1/top-5 of the release, of plain k-means re-sharing and
after distillation; agreement of the top-1 class with the release's; minutes. With --parts=all
each setting is also distilled on all 500 and scored on them (in-sample, for reference).

Every finished run goes to the ledger (--ledger, committed); a rerun skips it, so a fresh clone
runs only what is missing (an interrupted distillation resumes from its last epoch in --out).

  python bench/codebook_distill.py --out=runs/codebook_distill
  python bench/codebook_distill.py --report
"""

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

from _ledger import Ledger  # noqa: E402  (bench/ is the script's folder)

FLAGS = flags.FLAGS
flags.DEFINE_list("settings", ["6", "5", "max409600", "4", "max350000"],
                  "Bits (uniform) or maxN (widths per layer to N bytes), in this order.")
flags.DEFINE_list("parts", ["halves"], "halves (distil on one half, score on the other, both ways) and/or all.")
flags.DEFINE_integer("epochs", 8, "Distillation epochs.")
flags.DEFINE_float("temperature", 1.0, "Distillation temperature.")
flags.DEFINE_float("learning_rate", 0.001, "Distillation learning rate (sqznet-compress --distill_learning_rate).")
flags.DEFINE_integer("fisher_photos", 0, "Fisher-weighted sharing from this many photos "
                     "(sqznet-compress --distill_fisher_photos; 0: plain k-means).")
flags.DEFINE_bool("reassign", False, "Codes move during distillation (sqznet-compress --distill_reassign).")
flags.DEFINE_float("reassign_rate", None, "Latent step with --reassign (sqznet-compress --distill_reassign_rate).")
flags.DEFINE_string("data", "../shared/data", "The shared data folder.")
flags.DEFINE_string("out", "runs/codebook_distill", "Where the runs go.")
flags.DEFINE_string("ledger", os.path.join(REPO, "bench", "results", "codebook_distill.json"),
                    "Finished runs' results (committed).")
flags.DEFINE_bool("report", False, "Only tabulate what the ledger holds.")


def release():
  return os.path.join(FLAGS.data, "squeezenet_v1_0_deep_compression", "compressed_SqueezeNet.net")


def halves():
  """Symlink folders a/ and b/ of the sample photos, alternating in sorted order."""
  src = os.path.abspath(os.path.join(FLAGS.data, "imagenet_sample", "images"))
  files = sorted(f for f in os.listdir(src) if f.lower().endswith((".jpeg", ".jpg", ".png")))
  out = {}
  for i, part in enumerate(("a", "b")):
    d = os.path.join(FLAGS.out, "halves", part)
    os.makedirs(d, exist_ok=True)
    for f in files[i::2]:
      link = os.path.join(d, f)
      if not os.path.lexists(link):
        os.symlink(os.path.join(src, f), link)
    out[part] = d
  out["all"] = src
  return out


def setting_flags(setting):
  return [f"--max_bytes={int(setting[3:])}"] if setting.startswith("max") else [f"--bits={int(setting)}"]


def run_one(ledger, setting, train, test, folders):
  name = f"{setting}_{train}_{test}"
  if ledger.get(name):
    return
  work = os.path.join(FLAGS.out, name)
  os.makedirs(work, exist_ok=True)
  cmd = [sys.executable, os.path.join(REPO, "tools", "compress.py"), f"--weights={release()}", *setting_flags(setting),
         f"--distill_data={folders[train]}", f"--distill_epochs={FLAGS.epochs}",
         f"--distill_temperature={FLAGS.temperature}", f"--distill_learning_rate={FLAGS.learning_rate}",
         f"--distill_fisher_photos={FLAGS.fisher_photos}", f"--distill_reassign={FLAGS.reassign}",
         *([f"--distill_reassign_rate={FLAGS.reassign_rate}"] if FLAGS.reassign_rate else []),
         f"--data_dir={folders[test]}", f"--labels={os.path.join(FLAGS.data, 'imagenet_sample', 'synset_words.txt')}",
         f"--work_dir={work}", f"--output={work}.sqz", "--format=json"]
  print(f"{name}: {' '.join(cmd[1:])}", flush=True)
  t = time.time()
  with open(work + ".log", "a", encoding="utf-8") as f:
    rc = subprocess.call(cmd, stdout=f, stderr=f, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if rc:
    sys.exit(f"sqznet-compress exited {rc}; see {work}.log")
  with open(work + ".log", encoding="utf-8") as f:
    d = json.loads([l for l in f.read().splitlines() if l.startswith("{")][-1])
  loaded, shared, distilled, encoded = d["stages"]
  n = len(os.listdir(folders[test]))
  ledger.put(name, {
      "setting": setting, "train": train, "test": test, "photos": n, "bytes": encoded["file_bytes"],
      "widths": d["widths"], "minutes": round((time.time() - t) / 60, 1),
      **{f"{k}_{m}": s[m] for k, s in (("release", loaded), ("kmeans", shared), ("distilled", distilled))
         for m in ("top1", "top5")},
      "kmeans_agree": shared["agreement"], "distilled_agree": distilled["agreement"]})


def report(ledger):
  rows = []
  for setting in FLAGS.settings:
    recs = [ledger.get(f"{setting}_{a}_{b}") for a, b in (("a", "b"), ("b", "a"))]
    if not all(recs):
      continue
    n = sum(r["photos"] for r in recs)
    pool = lambda k: sum(r[k] * r["photos"] for r in recs) / n  # noqa: E731
    widths = recs[0]["widths"]
    label = (f"{setting} bits" if not setting.startswith("max") else
             f"to {int(setting[3:]):,} B: " + "/".join(f"{w}x{list(widths.values()).count(w)}"
                                                       for w in sorted(set(widths.values()), reverse=True)))
    sizes = " / ".join(format(r["bytes"], ",") for r in recs)
    rows.append(f"| {label} | {sizes} | {pool('release_top1'):.1%} | "
                f"{pool('kmeans_top1'):.1%} / {pool('kmeans_top5'):.1%} | {pool('distilled_top1'):.1%} / "
                f"{pool('distilled_top5'):.1%} | {100 * (pool('distilled_top1') - pool('release_top1')):+.1f} | "
                f"{pool('kmeans_agree'):.1%} -> {pool('distilled_agree'):.1%} | "
                f"{' / '.join(str(r['minutes']) for r in recs)} |")
  print("| setting | file bytes (a->b / b->a) | release top-1 | k-means top-1 / top-5 | distilled top-1 / top-5 | "
        "change vs release | agreement with release | minutes |")
  print("|---|---|---|---|---|---|---|---|")
  print("\n".join(rows))
  alls = [(s, ledger.get(f"{s}_all_all")) for s in FLAGS.settings if ledger.get(f"{s}_all_all")]
  if alls:
    print("\nIn-sample, for reference (distilled on all 500 photos and scored on the same 500):\n")
    print("| setting | file bytes | release top-1 | k-means top-1 | distilled top-1 / top-5 | change vs release | "
          "agreement with release | minutes |")
    print("|---|---|---|---|---|---|---|---|")
    for s, r in alls:
      print(f"| {s if s.startswith('max') else s + ' bits'} | {r['bytes']:,} | {r['release_top1']:.1%} | "
            f"{r['kmeans_top1']:.1%} | {r['distilled_top1']:.1%} / {r['distilled_top5']:.1%} | "
            f"{100 * (r['distilled_top1'] - r['release_top1']):+.1f} | {r['kmeans_agree']:.1%} -> "
            f"{r['distilled_agree']:.1%} | {r['minutes']} |")
  cpus = {r.get("cpu") for r in ledger.records.values()}
  print(f"\nCPU: {', '.join(sorted(c for c in cpus if c))}")


def main(argv):
  del argv
  settings = {"epochs": FLAGS.epochs, "temperature": FLAGS.temperature, "learning_rate": FLAGS.learning_rate}
  if FLAGS.fisher_photos:
    settings["fisher_photos"] = FLAGS.fisher_photos
  if FLAGS.reassign:
    settings["reassign"] = True
    if FLAGS.reassign_rate:
      settings["reassign_rate"] = FLAGS.reassign_rate
  ledger = Ledger(FLAGS.ledger, settings)
  if not FLAGS.report:
    folders = halves()
    for setting in FLAGS.settings:
      if "halves" in FLAGS.parts:
        run_one(ledger, setting, "a", "b", folders)
        run_one(ledger, setting, "b", "a", folders)
      if "all" in FLAGS.parts:
        run_one(ledger, setting, "all", "all", folders)
  report(ledger)


if __name__ == "__main__":
  app.run(main)
