"""peek.py RUN EVALDATA [op] : greedy generations of a run's last checkpoint (or model) on a few val problems."""
import json
import sys

import torch

sys.path.insert(0, "/work/main")
torch.set_num_threads(1)
from pathlib import Path

from transformers import AutoModelForCausalLM

from core.sampler import sample
from datagen.tokenizer import load_tokenizer
from pretrain.evalcb import load_problems, score

run, ev = Path(sys.argv[1]), sys.argv[2]
op = int(sys.argv[3]) if len(sys.argv) > 3 else 3
cfg = json.loads((run / "config.json").read_text())
from core.config import build
from pretrain.config import PretrainConfig
from pretrain.model import build_model

man = json.loads((Path(cfg["corpus"]["spec"] and ev) / "manifest.json").read_text())
tok = load_tokenizer(Path(ev) / man["tokenizer"]["dir"])
if (run / "model").exists():
    model = AutoModelForCausalLM.from_pretrained(run / "model")
else:
    c = build(PretrainConfig, cfg["config"], "pretrain")
    model = build_model(c.model, tok, 0)
    sd = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in sd.items()})
rows = [r for r in load_problems(ev, "val", 50) if r["op"] == op][:4]
out = sample(model, [tok(r["prompt"], add_special_tokens=False)["input_ids"] for r in rows], 1, 120, 0.0,
             tok.convert_tokens_to_ids("</answer>"), tok.pad_token_id)
for r, t in zip(rows, out.tokens):
    s = tok.decode(t)
    print("Q:", r["prompt"][:400]); print("GOLD:", r["text"][len(r["prompt"]):]); print("GEN: ", s, score(s, r)); print()
