"""Merges phantom datasets (`otonode phantom dataset` folders) into one that
`python -m otomodel train` reads: case folders are symlinked under a prefix
per source, so one run can train on several scanners and variants, which
`otonode phantom dataset --variant` makes one at a time.

    python3 tools/merge_datasets.py OUT SRC[=PREFIX] [SRC[=PREFIX] ...] [--validation-last N]

Each source keeps its train and validation splits (its test split is left
out: test cases stay unseen). A source with no validation case gives its
last N training cases to validation (--validation-last, default 1), so every
variant is validated. OUT/dataset.json lists every case with its source's
seed and variant, as the manifest's training.data records it.
"""

import argparse
import json
import os


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("sources", nargs="+", help="dataset folder, optionally =PREFIX (default: its name)")
    p.add_argument("--validation-last", type=int, default=1)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    splits = {"train": [], "validation": [], "test": []}
    cases, merged, first = [], [], None
    for spec in a.sources:
        src, _, prefix = spec.partition("=")
        src = os.path.abspath(src)
        prefix = prefix or os.path.basename(src.rstrip("/"))
        idx = json.load(open(os.path.join(src, "dataset.json")))
        first = first or idx
        own = [c for c in idx["cases"] if c.get("split") in ("train", "validation") and c.get("labelled", True)]
        if not any(c["split"] == "validation" for c in own):
            train = [c for c in own if c["split"] == "train"]
            for c in train[len(train) - a.validation_last:] if a.validation_last > 0 else []:
                c["split"] = "validation"
        for c in own:
            cid = f"{prefix}_{c['id']}"
            dst = os.path.join(a.out, cid)
            if os.path.lexists(dst):
                os.remove(dst)
            os.symlink(os.path.join(src, c["id"]), dst)
            splits[c["split"]].append(cid)
            cases.append({**c, "id": cid})
        merged.append({"path": src, "prefix": prefix, "cases": len(own)})
    out = {k: v for k, v in first.items() if k not in ("splits", "cases", "options")}
    out.update({"splits": splits, "cases": cases, "options": {"merged_from": merged}})
    with open(os.path.join(a.out, "dataset.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: len(v) for k, v in splits.items()}))


if __name__ == "__main__":
    main()
