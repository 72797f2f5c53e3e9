"""pretrain.optim: the Muon/AdamW split covers every parameter exactly once, the combined optimizer steps and resumes
like its two parts, both schedules equal their closed forms at every step, and a Lightning run trains with them."""

import copy
import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from pretrain.config import PretrainConfig
from pretrain.metrics import read_metrics
from pretrain.optim import MuonWithAdamW, build_optimizer, build_schedule, param_groups
from pretrain.recipe import Recipe
from tests.test_pretrain_helpers import corpus, tiny_config


def tiny_model(tie: bool) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tie)
    return Qwen2ForCausalLM(config)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_every_parameter_is_in_exactly_one_group(tie, optimizer):
    model = tiny_model(tie)
    groups = param_groups(model, PretrainConfig(optimizer=optimizer))
    placed = [id(p) for gs in groups.values() for g in gs for p in g["params"]]
    assert sorted(placed) == sorted(id(p) for p in model.parameters()) and len(placed) == len(set(placed))
    lookup = {id(model.model.embed_tokens.weight), id(model.lm_head.weight)}
    muon = [p for g in groups.get("muon", []) for p in g["params"]]
    if optimizer == "adamw":
        assert not muon
    else:  # exactly the hidden matrices: q/k/v/o and the three MLP projections of each layer
        assert len(muon) == 7 * 2 and all(p.dim() == 2 and id(p) not in lookup for p in muon)
    decayed, undecayed = groups["adamw"]
    assert all(p.dim() < 2 for p in undecayed["params"]) and undecayed["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} >= lookup


def test_muon_with_adamw_steps_and_resumes_like_its_parts():
    cfg = PretrainConfig(optimizer="muon", lr=1e-2, muon_lr=0.05)
    combined_model, parts_model = tiny_model(True), tiny_model(True)
    combined = build_optimizer(combined_model, cfg)
    assert isinstance(combined, MuonWithAdamW)
    groups = param_groups(parts_model, cfg)
    parts = [torch.optim.Muon(groups["muon"], lr=0.05, momentum=cfg.muon_momentum),
             torch.optim.AdamW(groups["adamw"], lr=1e-2, betas=tuple(cfg.betas))]
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))

    def step(model, optimizers):
        for o in optimizers:
            o.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        for o in optimizers:
            o.step()

    for _ in range(2):
        step(combined_model, [combined])
        step(parts_model, parts)
    saved_model, saved_state = copy.deepcopy(combined_model), copy.deepcopy(combined.state_dict())
    for _ in range(2):
        step(combined_model, [combined])
        step(parts_model, parts)
    for a, b in zip(combined_model.parameters(), parts_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    resumed = build_optimizer(saved_model, cfg)
    resumed.load_state_dict(saved_state)
    for _ in range(2):
        step(saved_model, [resumed])
    for a, b in zip(saved_model.parameters(), combined_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def cosine(step, cfg):
    warmup = round(cfg.warmup * cfg.steps)
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / (cfg.steps - warmup)
    floor = cfg.min_lr / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def wsd(step, cfg):
    warmup, decay, floor = round(cfg.warmup * cfg.steps), round(cfg.decay * cfg.steps), cfg.min_lr / cfg.lr
    if step < warmup:
        return floor + (1 - floor) * step / warmup
    if step < cfg.steps - decay:
        return 1.0
    return floor + (1 - floor) * (1 - math.sqrt((step - (cfg.steps - decay)) / decay))


@pytest.mark.parametrize("schedule, closed_form", [("cosine", cosine), ("wsd", wsd)])
@pytest.mark.parametrize("optimizer_name", ["adamw", "muon"])
def test_schedule_equals_its_closed_form_at_every_step(schedule, closed_form, optimizer_name):
    cfg = PretrainConfig(tokens=100 * 8 * 2048, lr=1e-3, min_lr=1e-4, warmup=0.1, decay=0.3, schedule=schedule,
                         optimizer=optimizer_name, muon_lr=0.02)
    assert cfg.steps == 100
    optimizer = build_optimizer(tiny_model(True), cfg)
    scheduler = build_schedule(optimizer, cfg)
    peaks = [group["initial_lr"] for group in optimizer.param_groups]
    assert sorted(set(peaks)) == ([1e-3, 0.02] if optimizer_name == "muon" else [1e-3])
    for step in range(cfg.steps):
        expected = closed_form(step, cfg)
        for group, peak in zip(optimizer.param_groups, peaks):  # every group, Muon's included, by one factor
            assert group["lr"] == pytest.approx(peak * expected, rel=1e-9, abs=1e-15), (step, group["lr"])
        optimizer.step()
        scheduler.step()
    if schedule == "wsd":  # stable at the peak until the cooldown, which ends near the floor
        assert closed_form(69, cfg) == 1.0 and closed_form(99, cfg) < 0.25


def test_a_lightning_run_trains_with_muon_and_wsd(tmp_path):
    cfg = tiny_config(30, optimizer="muon", schedule="wsd", decay=0.3, muon_lr=0.02, log_every=1)
    recipe = Recipe("pretrain", cfg, corpus(), tmp_path / "run", progress=False)
    recipe.setup()
    recipe.train()
    metrics = read_metrics(recipe.out)
    loss = metrics["train/loss"].dropna()
    assert loss.iloc[-5:].mean() < loss.iloc[:3].mean() - 1.0
    lr = metrics.filter(like="lr-").dropna(how="all")
    expected = [wsd(step, cfg) for step in range(cfg.steps)]
    assert lr.index.tolist() == list(range(cfg.steps))  # the lr each step ran with: Muon's group first, then AdamW's
    assert lr["lr-MuonWithAdamW/pg1"].tolist() == pytest.approx([cfg.muon_lr * f for f in expected])
    assert lr["lr-MuonWithAdamW/pg2"].tolist() == pytest.approx([cfg.lr * f for f in expected])


class Crash(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_crashed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, optimizer):
    """Lightning saves and restores the combined optimizer through its state_dict: a run that crashes after a
    checkpoint and is rerun ends where an uninterrupted one does (Muon's momentum and Adam's moments included)."""
    from pretrain.module import CausalLM

    cfg = tiny_config(12, optimizer=optimizer, schedule="wsd", checkpoint_every=4)

    def finish(out):
        recipe = Recipe("pretrain", cfg, corpus(), out, progress=False)
        recipe.setup()
        recipe.train()
        return {name: p.detach().clone() for name, p in recipe.module.model.named_parameters()}

    reference = finish(tmp_path / "reference")
    original = CausalLM.training_step

    def crash_at_step_6(self, batch, batch_idx):
        if self.global_step == 6:
            raise Crash
        return original(self, batch, batch_idx)

    with monkeypatch.context() as patch:
        patch.setattr(CausalLM, "training_step", crash_at_step_6)
        with pytest.raises(Crash):
            finish(tmp_path / "crashed")
    assert (tmp_path / "crashed" / "checkpoints" / "last.ckpt").exists()
    resumed = finish(tmp_path / "crashed")
    for name, value in reference.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)
