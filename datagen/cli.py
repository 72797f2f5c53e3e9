"""`lab datagen --preset NAME --out DIR [--field value ...]`: build a corpus and print its summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import ConfigError, config_help, help_formatter, load, parse_overrides
from core.lock import LockError, exclusive
from datagen.contexts import ContextError
from datagen.corpus import CorpusError, build_corpus, built_with
from datagen.spec import CorpusSpec


def summary(manifest: dict) -> str:
    spec = manifest["spec"]
    lines = [f"corpus: rendering={spec['rendering']} modulus={spec['graph']['modulus']} seed={spec['seed']}"]
    for split, rows in manifest["rows"].items():
        tokens = manifest["tokens"][split]
        per_ctx = {ctx: sum(ops.values()) for ctx, ops in manifest["counts"][split].items()}
        ops = sorted({int(op) for c in manifest["counts"][split].values() for op in c})
        lines.append(f"  {split:5s} {rows:>9,} rows {tokens:>12,} tokens ({tokens / max(rows, 1):.0f}/row)  "
                     f"op {ops[0]}-{ops[-1]}  contexts {per_ctx}")
    lines.append(f"  distinct reasoning graphs per split {manifest['distinct_graphs']}, "
                 f"overlap {manifest['split_overlap']}")
    if manifest.get("left_out"):
        lines.append(f"  rows left out (no reasoning graph of that op in the split): {manifest['left_out']}")
    lines.append(f"  tokenizer vocab {manifest['tokenizer']['vocab_size']}, "
                 f"wall {manifest['provenance']['wall_s']:.1f}s, commit {manifest['provenance']['commit'][:12]}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lab datagen", description=__doc__, formatter_class=help_formatter,
                                     epilog=config_help(argv, [("datagen", CorpusSpec)]))
    parser.add_argument("--preset", default="smoke", help="preset name or YAML path (section 'datagen')")
    parser.add_argument("--out", required=True, type=Path, help="corpus directory to create")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    try:
        spec = load(CorpusSpec, args.preset, "datagen", parse_overrides(rest))
        with exclusive(args.out):
            if existing := built_with(spec, args.out):
                print(f"{args.out}: already built with this spec")
                print(summary(existing))
                return 0
            manifest = build_corpus(spec, args.out, progress=not args.quiet)
    except (ConfigError, ContextError, CorpusError, LockError) as err:
        print(f"lab datagen: error: {err}", file=sys.stderr)
        return 2
    print(summary(manifest))
    print(f"wrote {args.out}")
    return 0
