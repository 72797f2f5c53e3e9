"""roles.py RUN EVALDATA: teacher-forced next-token accuracy on val solutions (ops 2-6) by token role.

Reads steps "X = A op B = v ;" (compact) and "X = A a op B b = v ;" (compact-inline). A number is a leaf value
in a one-'=' step, the step result after the step's last '=', a constant after an operator, and otherwise (inline)
an operand's value. Round 1's table was computed by an earlier version that counted constants as operands.
"""
import sys

import torch

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
    toks = [t.strip() for t in tok.convert_ids_to_tokens(ids)]
    with torch.no_grad():
        pred = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1).tolist()
    start, end = toks.index("<solution>"), toks.index("</solution>")
    pos = eq = 0
    for i in range(start + 1, end):
        t, prev = toks[i], toks[i - 1]
        if not t:
            continue
        step_eq = eq + toks[i:toks.index(";", i)].count("=")  # '=' signs in the whole step
        if pos == 0: role = "step name (gold order)"
        elif t in ("=", ";"): role = "'=' / ';'"
        elif t in "+-*": role = "operator (copy)"
        elif not t.isdigit(): role = "operand name (copy)"
        elif step_eq == 1: role = "leaf value (copy from statement)"
        elif eq == step_eq: role = "step result (arithmetic)"
        elif prev in "+-*": role = "constant (copy)"
        else: role = "operand value (look-up)"
        hit[role] = hit.get(role, 0) + (pred[i - 1] == ids[i]); tot[role] = tot.get(role, 0) + 1
        eq += t == "="; pos += 1
        if t == ";": pos = eq = 0
print(run.name, f"{len(rows)} val problems, ops 2-6, teacher-forced argmax accuracy by role:")
for k in sorted(tot): print(f"  {k:36s} {hit[k]/tot[k]:.3f}  (n={tot[k]})")
