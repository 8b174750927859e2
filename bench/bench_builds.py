"""Two builds side by side: GET .../recommendations (or another read) served by this checkout and by an earlier
revision, beside the bare endpoint, in the same run. The three take turns in short rounds, so that a machine whose
speed drifts (other tenants, a shrinking page cache) weighs on each alike; the figure to read is the ratio of the
two builds' throughputs, and each build's ratio to bare. Offer states are refreshed first, as this checkout's
schedule keeps them (bench.bench_reads.refresh_offer_states).

Usage: python -m bench.bench_builds --dsn postgresql://... --baseline REV   (a database loaded with `tierwise demo`
and migrated to this checkout's head; the baseline's code must run on that schema)
"""

import argparse
import asyncio
import random
import subprocess
import tempfile
from pathlib import Path

from bench.bench_reads import refresh_offer_states, sample_ids, serve_bare, wrk
from bench.harness import ROOT, create_key, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--baseline", required=True, help="a git revision of this repository")
    parser.add_argument("--suffix", default="/recommendations?explore=true", help="the read, after the customer id")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5, help="per endpoint per round")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    print(f"offer states refreshed: {asyncio.run(refresh_offer_states(args.dsn))}", flush=True)
    ids = asyncio.run(sample_ids(args.dsn, 20_000))
    random.shuffle(ids)
    key = asyncio.run(create_key(args.dsn, "app"))
    with tempfile.TemporaryDirectory() as scratch:
        baseline_root = Path(scratch) / "baseline"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline_root), args.baseline],
            check=True,
            capture_output=True,
        )
        ids_file = Path(scratch) / "ids"
        ids_file.write_text("\n".join(ids) + "\n")
        try:
            rps: dict[str, list[float]] = {"bare": [], "baseline": [], "this": []}
            with serve_bare(args.dsn) as bare, serve(args.dsn, root=baseline_root) as baseline, serve(args.dsn) as this:
                targets = {
                    "bare": (bare + "/bare/", "-", ""),
                    "baseline": (baseline + "/v1/customers/", key, args.suffix),
                    "this": (this + "/v1/customers/", key, args.suffix),
                }
                for url, api_key, suffix in targets.values():  # warm-up, not recorded
                    wrk(url, str(ids_file), api_key, suffix, 3, args.connections)
                for n in range(args.rounds):
                    for name, (url, api_key, suffix) in targets.items():
                        result = wrk(url, str(ids_file), api_key, suffix, args.seconds, args.connections)
                        assert result["non_2xx"] == 0, (name, result)
                        rps[name].append(result["rps"])
                    print(
                        f"round {n}: " + " ".join(f"{name}={values[-1]:.0f}" for name, values in rps.items()),
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline_root)],
                check=False,
                capture_output=True,
            )
    total = {name: sum(values) for name, values in rps.items()}
    print(
        f"baseline={args.baseline} suffix={args.suffix} rounds={args.rounds} seconds={args.seconds} "
        f"connections={args.connections}"
    )
    print(f"baseline_ratio_to_bare={total['baseline'] / total['bare']:.3f}")
    print(f"this_ratio_to_bare={total['this'] / total['bare']:.3f}")
    print(f"this_over_baseline={total['this'] / total['baseline']:.3f}")


if __name__ == "__main__":
    main()
