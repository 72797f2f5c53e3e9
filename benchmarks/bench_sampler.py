"""Tokens/s of `core.sampler.sample` against `model.generate(num_return_sequences=K)`.

Both sample the same randomly initialised Qwen2 models on the same prompts with the same number of new tokens (no stop
token, so neither can finish early), in one process with the same thread count, so the ratio isolates the sampler
itself. The best of several repeats is reported because the machine is shared and noise only ever adds time; the
CPU-time ratio (this process's CPU seconds) is the steadier figure when other jobs compete for the cores. Longer
prompts (--prompt-len) favour the sampler further, since generate encodes and re-reads each prompt K times.

    python -m benchmarks.bench_sampler [--repeats 3] [--threads 1 2]
"""

import argparse
import time
from dataclasses import dataclass

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from core.sampler import sample

VOCAB_SIZE = 2200  # the paper's BPE vocabulary


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    ffn: int
    layers: int
    heads: int
    kv_heads: int


SHAPES = [
    ModelShape("~1M", hidden=128, ffn=512, layers=4, heads=4, kv_heads=2),
    ModelShape("~10M", hidden=320, ffn=1280, layers=6, heads=5, kv_heads=1),
]


def build_model(shape: ModelShape, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    return Qwen2ForCausalLM(config).eval()


def make_prompts(num_prompts: int, mean_len: int, seed: int) -> list[list[int]]:
    """Lengths vary around the mean so that left padding is exercised as it is in real rollouts."""
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(mean_len - 10, mean_len + 11, (num_prompts,), generator=rng)
    return [torch.randint(1, VOCAB_SIZE, (int(n),), generator=rng).tolist() for n in lengths]


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # this process's CPU time: on a shared machine it is barely moved by other jobs' load
    tokens: int


def measure(generate) -> Run:
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = generate()
    return Run(time.perf_counter() - wall, time.process_time() - cpu, tokens)


def run_ours(model, prompts, k, new_tokens, seed) -> Run:
    generator = torch.Generator().manual_seed(seed)
    return measure(
        lambda: sum(sample(model, prompts, k, new_tokens, 1.0, None, 0, generator).lengths)
    )


@torch.inference_mode()
def run_hf(model, prompts, k, new_tokens, seed) -> Run:
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    attention_mask = (input_ids != 0).long()
    torch.manual_seed(seed)
    # top_k=0 switches off generate's default top-50 filter, so both draw from the plain temperature-1 softmax.
    generate_kwargs = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=0)
    return measure(
        lambda: model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            num_return_sequences=k,
            max_new_tokens=new_tokens,
            **generate_kwargs,
        )[:, width:].numel()
    )


def best_runs(runners, repeats, *args) -> list[Run]:
    """The fastest repeat of each runner. Runners take turns, so a burst of load from other jobs on the machine
    hits both rather than one."""
    runs = [[runner(*args) for runner in runners] for _ in range(repeats)]
    return [min(column, key=lambda run: run.wall_s) for column in zip(*runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=150)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    prompts = make_prompts(args.prompts, args.prompt_len, args.seed)
    print(
        f"{args.prompts} prompts x K={args.k}, {args.prompt_len}±10 prompt tokens, {args.new_tokens} new tokens, "
        f"best of {args.repeats}; tok/s = generated tokens / wall seconds"
    )
    print(f"{'model':>6} {'params':>7} {'threads':>7} {'HF tok/s':>9} {'ours tok/s':>10} {'ratio':>6}", end=" ")
    print(f"{'CPU-time ratio':>14}")
    for shape in SHAPES:
        model = build_model(shape, args.seed)
        params = sum(p.numel() for p in model.parameters())
        for threads in args.threads:
            torch.set_num_threads(threads)
            run_ours(model, prompts[:1], 1, 4, args.seed)  # warm-up: first-call allocations and lazy imports
            run_hf(model, prompts[:1], 1, 4, args.seed)
            hf, ours = best_runs([run_hf, run_ours], args.repeats, model, prompts, args.k, args.new_tokens, args.seed)
            hf_rate, our_rate = hf.tokens / hf.wall_s, ours.tokens / ours.wall_s
            print(
                f"{shape.name:>6} {params / 1e6:>6.2f}M {threads:>7} {hf_rate:>9.0f} {our_rate:>10.0f} "
                f"{our_rate / hf_rate:>5.2f}x {hf.cpu_s / ours.cpu_s:>13.2f}x"
            )


if __name__ == "__main__":
    main()
