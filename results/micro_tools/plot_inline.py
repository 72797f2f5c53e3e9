"""plot_inline.py OUT.png: learning curves of the second micro round (rendering experiments, /tmp/m2/runs):
greedy process-verified accuracy per ladder split and solution loss against training wall minutes."""
import sys

sys.path.insert(0, "/work/main")
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pretrain.metrics import read_metrics

R = "/tmp/m2/runs/"
runs = {"compact-inline, 24M tokens": "inline60", "compact-inline, 18M tokens": "inline",
        "compact-worked (killed at 11M)": "worked"}
fig, ax = plt.subplots(1, 3, figsize=(17, 4.8))
styles = {"ID": "-", "edge": "--", "hard": ":"}
for i, (label, run) in enumerate(runs.items()):
    m = read_metrics(R + run)
    m["minutes"] = m["train/time"].ffill().fillna(0) / 60
    loss = m[m["train/loss"].notna()]
    ax[2].plot(loss["minutes"], loss["train/loss"].rolling(10, min_periods=1).mean(), color=f"C{i}", label=label, lw=1)
    ev = m[m["eval/verified_op2"].notna()]
    for split, ls in styles.items():
        ax[0].plot(ev["minutes"], ev[f"eval/verified_{split}"], ls, color=f"C{i}", marker="o", ms=3,
                   label=f"{label}: {split}")
    ops = [c for c in ev.columns if c.startswith("eval/verified_op")]
    last = ev.iloc[-1]
    ax[1].plot([int(c.removeprefix("eval/verified_op")) for c in ops], [last[c] for c in ops], marker="o",
               color=f"C{i}", label=f"{label} (last eval, {last['minutes']:.0f} min)")
ax[0].axhline(0.8, color="r", lw=0.8, label="target on ID")
ax[0].set_ylabel("greedy process-verified accuracy (val, 32/op)")
ax[1].set_xlabel("op"); ax[1].set_ylabel("greedy process-verified accuracy (val, 32 problems)")
for lo, hi, name in ((2, 6, "ID"), (7, 9, "edge"), (10, 14, "hard")):
    ax[1].axvspan(lo - .5, hi + .5, alpha=.06 * (1 + (name == "edge")), color="k")
ax[2].set_ylabel("train solution loss (nats/token, 10-log smoothing)")
for a in (ax[0], ax[2]):
    a.set_xlabel("training wall minutes (1 thread, eval included)")
for a in ax:
    a.grid(alpha=.3); a.legend(fontsize=6)
ax[0].set_ylim(-0.02, 1.02); ax[1].set_ylim(-0.02, 1.02); ax[0].axvline(60, color="k", lw=0.5)
fig.suptitle("micro pre-training, mod 7, no distractors, 1 thread each on a 2-vCPU machine")
fig.tight_layout(); fig.savefig(sys.argv[1], dpi=110); print("wrote", sys.argv[1])
