"""plot_rl.py OUT.png RUN_DIR...: RL reward and verified pass rate per step (raw and 10-step mean)."""
import sys

sys.path.insert(0, "/work/main")
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pretrain.metrics import read_metrics

fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
for i, run in enumerate(sys.argv[2:]):
    m = read_metrics(run)
    m = m[m["rl/reward"].notna()]
    lr = json.load(open(f"{run}/config.json"))["config"]["lr"]
    for a, key, name in zip(ax, ("rl/reward", "rl/verified", "rl/kl"), ("reward (outcome)", "verified", "KL")):
        a.plot(m["rl/step"], m[key], color=f"C{i}", alpha=.25, lw=.8)
        a.plot(m["rl/step"], m[key].rolling(10, min_periods=1).mean(), color=f"C{i}", label=f"lr {lr:g}")
        a.set_title(f"{name} per step (16 prompts x 8 rollouts)", fontsize=10)
for a in ax:
    a.set_xlabel("RL step"); a.grid(alpha=.3); a.legend(fontsize=8)
fig.suptitle("GRPO on the micro base (compact-inline, mod 7, op 2-6 prompts), 1 CPU thread")
fig.tight_layout(); fig.savefig(sys.argv[1], dpi=110); print("wrote", sys.argv[1])
