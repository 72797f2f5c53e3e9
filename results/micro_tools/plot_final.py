"""Learning curves of the micro runs: greedy verified / answer accuracy per ladder split and solution loss
vs training wall minutes (eval time included). Continuation (midtrain) runs are appended after their parent."""
import json
import sys

sys.path.insert(0, "/work/main")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from pretrain.metrics import read_metrics

R = "/tmp/micro/runs/"
def series(parts):
    frames, t0, k0 = [], 0.0, 0.0
    for p in parts:
        m = read_metrics(R + p)
        if m.empty or "train/time" not in m:
            continue
        m = m.copy()
        m["minutes"] = (m["train/time"].ffill().fillna(0) + t0) / 60
        m["mtok"] = (m["train/tokens"].ffill().fillna(0) + k0) / 1e6
        frames.append(m)
        s = R + p + "/summary.json"
        try:
            sm = json.load(open(s)); t0 += sm["wall_s"]; k0 += sm["tokens"]
        except FileNotFoundError:
            t0 += m["train/time"].dropna().iloc[-1]; k0 += m["train/tokens"].dropna().iloc[-1]
    return pd.concat(frames, ignore_index=True)

runs = {"F1 mod7 distr0.5": ["F1_m7", "F1_m7_cont"], "F2 mod7 distr0": ["F2_m7_d0", "F2_m7_d0_cont"],
        "p1 mod23 bs16": ["p1_m23"], "p2 mod7 bs16": ["p2_m7"], "p3 mod7 bs8": ["p3_m7_b8"],
        "p4 mod7 bs8 rope1e4": ["p4_m7_b8_rope"]}
fig, ax = plt.subplots(1, 3, figsize=(17, 4.8))
ls = {"ID": "-", "edge": "--", "hard": ":"}
for i, (name, parts) in enumerate(runs.items()):
    m = series(parts)
    c = f"C{i}"
    l = m[m["train/loss"].notna()]
    ax[2].plot(l["minutes"], l["train/loss"].rolling(10, min_periods=1).mean(), color=c, label=name, lw=1)
    if not name.startswith("F"):
        continue
    e = m[m["eval/verified_op2"].notna()]
    for split, st in ls.items():
        ax[0].plot(e["minutes"], e[f"eval/verified_{split}"], st, color=c, marker="o", ms=3, label=f"{name} {split}")
        ax[1].plot(e["minutes"], e[f"eval/answer_{split}"], st, color=c, marker="o", ms=3, label=f"{name} {split}")
ax[1].axhline(1 / 7, color="gray", lw=0.8, label="chance (mod 7)")
for a in ax[:2]:
    a.set_ylim(-0.02, 1.02); a.axvline(60, color="k", lw=0.5); a.legend(fontsize=6)
ax[0].axhline(0.8, color="r", lw=0.8); ax[0].set_ylabel("greedy process-verified accuracy (val, 32/op)")
ax[1].set_ylabel("greedy answer accuracy (val, 32/op)")
ax[2].set_ylabel("train solution loss (nats/token, 10-log smoothing)"); ax[2].legend(fontsize=7)
for a in ax:
    a.set_xlabel("training wall minutes (1 thread, eval included)"); a.grid(alpha=.3)
fig.suptitle("micro pre-training on 2 shared CPU cores: no run leaves chance (target: 0.8 verified on ID ops)")
fig.tight_layout(); fig.savefig(sys.argv[1], dpi=110); print("wrote", sys.argv[1])
