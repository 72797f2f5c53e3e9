import json
import sys

sys.path.insert(0, "/work/main")
from pretrain.metrics import read_metrics

for run in sys.argv[1:]:
    m = read_metrics(run)
    loss = m["train/loss"].dropna()
    t = m["train/time"].dropna()
    tok = m["train/tokens"].dropna()
    last = loss.index[-1]
    tail = loss.iloc[-5:].mean()
    tps = m["train/device/items_per_sec"].dropna()
    cfg = json.load(open(f"{run}/config.json"))["config"]
    ev = m[m["eval/verified_op2"].notna()] if "eval/verified_op2" in m else None
    evs = ""
    if ev is not None and len(ev):
        r = ev.iloc[-1]
        evs = f"eval@{ev.index[-1]}: ID {r['eval/verified_ID']:.3f}/{r['eval/answer_ID']:.3f} edge {r['eval/verified_edge']:.3f}/{r['eval/answer_edge']:.3f} hard {r['eval/verified_hard']:.3f}/{r['eval/answer_hard']:.3f}"
    print(f"{run.split('/')[-1]}: last step {last}, tokens {tok.iloc[-1]/1e6:.2f}M, wall {t.iloc[-1]/60:.1f} min, "
          f"tok/s {tok.iloc[-1]/t.iloc[-1]:.0f} (median window {tps.median():.0f}), loss(last5) {tail:.3f}; {evs}")
