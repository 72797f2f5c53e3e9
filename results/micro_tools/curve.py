"""Print / plot the eval learning curve of run dirs: python curve.py RUN [RUN...] [--png OUT]"""
import sys

sys.path.insert(0, "/work/main")
from pretrain.metrics import read_metrics

args = sys.argv[1:]
png = None
if "--png" in args:
    i = args.index("--png"); png = args[i + 1]; args = args[:i] + args[i + 2:]
for run in args:
    m = read_metrics(run)
    ev = [c for c in m.columns if c.startswith("eval/verified_") and not c[14:].startswith("op")]
    print(run)
    cols = ["train/loss", "train/tokens"] + sorted(c for c in m.columns if c.startswith("eval/"))
    loss = m["train/loss"].dropna() if "train/loss" in m else None
    if "eval/verified_op2" not in m:
        print("  no eval yet; last loss", None if loss is None else (loss.index[-1], round(loss.iloc[-1], 3)))
        continue
    e = m[m["eval/verified_op2"].notna()]
    for step, r in e.iterrows():
        l = loss[loss.index <= step].iloc[-1] if loss is not None and (loss.index <= step).any() else float("nan")
        ops = " ".join(f"{int(c[16:])}:{r[c]:.2f}/{r['eval/answer_op'+c[16:]]:.2f}" for c in sorted(
            [c for c in m.columns if c.startswith("eval/verified_op")], key=lambda c: int(c[16:])))
        print(f"  step {step:5d} loss {l:.3f} t={r.get('eval/seconds', float('nan')):.0f}s  ver/ans {ops}")
