"""roles.py RUN EVALDATA: teacher-forced next-token accuracy on val solutions (ops 2-6) by token role."""
import sys, json, torch
sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from pathlib import Path
from transformers import AutoModelForCausalLM
from datagen.tokenizer import load_tokenizer
from pretrain.evalcb import load_problems
run, ev = Path(sys.argv[1]), Path(sys.argv[2])
tok = load_tokenizer(run / "model")
model = AutoModelForCausalLM.from_pretrained(run / "model").eval()
rows = [r for r in load_problems(ev, "val", 32) if r["op"] <= 6]
hit, tot = {}, {}
for r in rows:
    ids = tok(r["text"], add_special_tokens=False)["input_ids"]
    toks = tok.convert_ids_to_tokens(ids)
    with torch.no_grad():
        pred = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).tolist()
    s = toks.index("<solution>"); e = toks.index("</solution>")
    pos, eq = 0, 0
    for i in range(s + 1, e + 1):
        t = toks[i].strip()
        if i == e: role = "end-of-solution"
        elif pos == 0: role = "step name (which node next)"
        elif t == "=" or t == ";": role = "'=' / ';'"
        elif eq == 2: role = "value (arithmetic)"
        elif t in "+-*": role = "operator (copy)"
        elif t.isdigit() and eq == 1 and toks[i + 1].strip() == ";": role = "leaf value (copy)"
        else: role = "operand (copy)"
        hit[role] = hit.get(role, 0) + (pred[i - 1] == ids[i]); tot[role] = tot.get(role, 0) + 1
        if t == "=": eq += 1
        pos += 1
        if t == ";": pos, eq = 0, 0
print(run.name, f"{len(rows)} val problems, ops 2-6, teacher-forced argmax accuracy by role:")
for k in tot: print(f"  {k:32s} {hit[k]/tot[k]:.3f}  (n={tot[k]})")
