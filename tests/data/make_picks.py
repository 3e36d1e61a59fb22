"""Make tests/data/picks.jsonl: real offers of the real default model, and a simulated person's picks.

Run once from the repository root (about half an hour on two cores)::

    .venv/bin/python tests/data/make_picks.py            # samples what is missing, then picks
    .venv/bin/python tests/data/make_picks.py --rechoose # only re-applies the person's rule

**The prompts** are texts of the original Loom's demo tree (../shared/fixtures/loom/loom_demo.json,
as tests/test_loom.py finds it): for every node with at least 60 characters of its own text, the
text from the root to the end of that node, its last :data:`PROMPT_CHARS` characters (cut at a
word). :data:`OFFERS` of them, evenly spaced in the tree's depth-first order.

**The offers** come from :class:`ambient.sampling.local.LocalSampler` on the bundled Gemma 3 270M
base, :data:`N` branches of :data:`MAX_TOKENS` tokens per prompt, temperature 0.9, seed
``SEED + offer index`` (branch i uses seed + i), on the CPU.

**The person** is :mod:`ambient.bench.taste`. Their rule: they like continuations that name
concrete, everyday objects (a fixed list: door, lamp, key, letter, ...). They pick the one
continuation that names the most of them when it is the only one with that count and the count
is at least 1; otherwise they pick nothing. Each line of the file is one offer, in the order the
person saw them (the "time" of the held-out split)::

    {"offer": 0, "loom_node": "...", "prompt": "...", "seed": 1000, "model": "gemma-3-270m",
     "continuations": ["...", ...], "scores": [0, 2, ...], "chosen": 1}
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ambient.bench import taste  # noqa: E402

LOOM_DEMO = REPO.parent / "shared" / "fixtures" / "loom" / "loom_demo.json"
OUT = Path(__file__).resolve().parent / "picks.jsonl"
OFFERS = 240
N = 6
MAX_TOKENS = 28
TEMPERATURE = 0.9
SEED = 1000
PROMPT_CHARS = 900
MIN_NODE_CHARS = 60


def prompts(fixture: Path = LOOM_DEMO) -> list[tuple[str, str]]:
    """(Loom node id, prompt) for :data:`OFFERS` nodes, evenly spaced in depth-first order."""
    root = json.loads(fixture.read_text(encoding="utf-8"))["root"]
    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def walk(node: dict[str, object], path: str) -> None:
        text = path + str(node.get("text") or "")
        own = str(node.get("text") or "").strip()
        if len(own) >= MIN_NODE_CHARS:
            prompt = _tail(text, PROMPT_CHARS)
            if prompt not in seen:
                seen.add(prompt)
                found.append((str(node["id"]), prompt))
        for child in node.get("children", []) or []:  # type: ignore[union-attr]
            walk(child, text)

    walk(root, "")
    step = len(found) / OFFERS
    return [found[int(i * step)] for i in range(min(OFFERS, len(found)))]


def _tail(text: str, chars: int) -> str:
    """The last ``chars`` characters of ``text``, starting at a word."""
    if len(text) <= chars:
        return text
    cut = text[-chars:]
    match = re.search(r"\s", cut)
    return cut[match.end() :] if match else cut


def sample(limit: int | None) -> None:
    from ambient.models import prepare_default_model
    from ambient.sampling.base import SamplingOptions
    from ambient.sampling.local import LocalSampler

    done = {json.loads(line)["offer"] for line in OUT.read_text().splitlines()} if OUT.exists() else set()
    todo = [(i, p) for i, p in enumerate(prompts()) if i not in done][:limit]
    if not todo:
        return
    sampler = LocalSampler(prepare_default_model(REPO / ".cache" / "models"), device="cpu")
    with OUT.open("a", encoding="utf-8") as out:
        for i, (node_id, prompt) in todo:
            t0 = time.perf_counter()
            options = SamplingOptions(
                n=N, max_tokens=MAX_TOKENS, temperature=TEMPERATURE, seed=SEED + i, top_logprobs=0
            )
            result = sampler.generate(prompt, options)
            texts = [c.text for c in result.continuations]
            record = {
                "offer": i,
                "loom_node": node_id,
                "prompt": prompt,
                "seed": SEED + i,
                "model": sampler.name,
                "continuations": texts,
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            print(f"offer {i}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def rechoose() -> int:
    """Apply the person's rule to every offer in the file, in offer order; returns the picks made."""
    records = sorted((json.loads(line) for line in OUT.read_text().splitlines()), key=lambda r: r["offer"])
    picks = 0
    for r in records:
        r["scores"] = [taste.score(t) for t in r["continuations"]]
        r["chosen"] = taste.choose(r["continuations"])
        picks += r["chosen"] is not None
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return picks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rechoose", action="store_true", help="only re-apply the person's rule")
    parser.add_argument("--limit", type=int, default=None, help="sample at most this many offers now")
    args = parser.parse_args()
    if not args.rechoose:
        sample(args.limit)
    picks = rechoose()
    print(f"{OUT.name}: {picks} picks", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
