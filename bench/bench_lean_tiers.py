"""Tiers for the app, lean: the bulk read of 1,000 customers' tiers in one call (POST /v1/customers/tiers:read)
against 1,000 single GET /v1/customers/{id}/tiers calls, and GET .../tiers?explain=false against the full
document; all taking turns in the same run, on the same sample of customers, with wrk on loopback.

Throughput is counted in customers answered per second: a single GET answers one, a bulk call 1,000 (distinct ids,
all found). The single GETs are asked as lean as the bulk call (explain=false) and, beside that, full.

The bulk call is also asked with `Accept-Encoding: gzip`, as an HTTP client library sends it (the server then
spends its CPU compressing the large body). With --baseline DIR, a second server runs another checkout of the
service (e.g. `git archive` of the branch before a change) and its single lean GET and bulk call take their turns in
the same rounds, so that the two builds' ratios are measured side by side.

Usage: python -m bench.bench_lean_tiers --dsn postgresql://...   (a database loaded with `tierwise demo`)
"""

import argparse
import asyncio
import contextlib
import gzip
import os
import random
import re
import subprocess
import tempfile
from pathlib import Path

import httpx

from bench.bench_reads import _ms, sample_ids
from bench.harness import ROOT, create_key, serve


def wrk(url: str, script: str, script_args: list[str], duration: int, connections: int) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(ROOT / "bench" / script),
            url,
            "--",
            *script_args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50, p99 = (_ms(re.search(rf"\s{q}%\s+([\d.]+\w+)", out).group(1)) for q in ("50", "99"))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True, help="a database loaded with `tierwise demo`")
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="the endpoints take turns this many times")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for the single GETs")
    parser.add_argument("--bulk-connections", type=int, default=4, help="wrk connections for the bulk calls")
    parser.add_argument("--customers", type=int, default=20_000, help="customers sampled")
    parser.add_argument("--batch", type=int, default=1000, help="customers per bulk call")
    parser.add_argument("--baseline", type=Path, help="another checkout of the service, measured side by side")
    args = parser.parse_args()

    ids = asyncio.run(sample_ids(args.dsn, args.customers))
    random.shuffle(ids)
    key = asyncio.run(create_key(args.dsn, "app"))
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as handle:
        handle.write("\n".join(ids) + "\n")
    ids_file = handle.name
    slice_s = max(args.duration // args.rounds, 1)
    with contextlib.ExitStack() as servers:
        base = servers.enter_context(serve(args.dsn))
        baseline = servers.enter_context(serve(args.dsn, root=args.baseline.resolve())) if args.baseline else None
        single = base + "/v1/customers/"
        batch = args.batch
        bulk_args = [ids_file, key, str(batch), "false"]
        lean_args = [ids_file, key, "/tiers?explain=false", "0"]
        targets = {  # name: (url, script, its arguments, connections, customers per request)
            "single_full": (single, "random_ids.lua", [ids_file, key, "/tiers", "0"], args.connections, 1),
            "single_lean": (single, "random_ids.lua", lean_args, args.connections, 1),
            "bulk_lean": (base + "/v1/customers/tiers:read", "bulk_ids.lua", bulk_args, args.bulk_connections, batch),
            "bulk_lean_gzip": (
                base + "/v1/customers/tiers:read",
                "bulk_ids.lua",
                [*bulk_args, "gzip"],
                args.bulk_connections,
                args.batch,
            ),
        }
        if baseline:
            targets["baseline_single_lean"] = (
                baseline + "/v1/customers/",
                "random_ids.lua",
                lean_args,
                args.connections,
                1,
            )
            targets["baseline_bulk_lean"] = (
                baseline + "/v1/customers/tiers:read",
                "bulk_ids.lua",
                bulk_args,
                args.bulk_connections,
                args.batch,
            )
        headers = {"X-API-Key": key}
        sizes = {
            "full": len(httpx.get(f"{single}{ids[0]}/tiers", headers=headers).content),
            "lean": len(httpx.get(f"{single}{ids[0]}/tiers?explain=false", headers=headers).content),
        }
        documents = {}
        for server in (base, baseline) if baseline else (base,):
            check = httpx.post(
                server + "/v1/customers/tiers:read",
                headers={**headers, "Accept-Encoding": "identity"},
                json={"customer_ids": ids[: args.batch]},
                timeout=60,
            )
            assert check.status_code == 200 and all(item["found"] for item in check.json()["items"]), check.text[:500]
            documents[server] = check.content
        sizes["bulk"] = len(documents[base])
        if baseline:  # the two builds answer the same bytes
            assert documents[base] == documents[baseline], "the baseline answers another document"
        zipped = httpx.post(
            base + "/v1/customers/tiers:read",
            headers={**headers, "Accept-Encoding": "gzip"},
            json={"customer_ids": ids[: args.batch]},
            timeout=60,
        )
        assert zipped.headers.get("content-encoding") == "gzip" and zipped.content == documents[base]
        sizes["bulk_gzip"] = len(gzip.compress(documents[base], 5))
        for url, script, script_args, connections, _ in targets.values():  # warm-up, not recorded
            wrk(url, script, script_args, 3, connections)
        results: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, script, script_args, connections, _) in targets.items():
                results[name].append(wrk(url, script, script_args, slice_s, connections))
    os.unlink(ids_file)
    load = os.getloadavg()
    print(
        f"customers_sampled={len(ids)} batch={args.batch} rounds={args.rounds} seconds_per_round={slice_s} "
        f"connections={args.connections} bulk_connections={args.bulk_connections} "
        f"load_average={load[0]:.1f},{load[1]:.1f},{load[2]:.1f}"
    )
    print(
        f"bytes_per_customer: full={sizes['full']} lean={sizes['lean']} bulk={sizes['bulk'] / args.batch:.0f} "
        f"bulk_gzip={sizes['bulk_gzip'] / args.batch:.0f} (level 5, as the server's)"
    )
    customers = {}
    for name, rounds in results.items():
        per_request = targets[name][4]
        rps = sum(r["rps"] for r in rounds) / len(rounds)
        customers[name] = [r["rps"] * per_request for r in rounds]
        print(
            f"{name}: requests_per_s={rps:.1f} customers_per_s={rps * per_request:.0f} "
            f"p50_ms(median round)={sorted(r['p50_ms'] for r in rounds)[len(rounds) // 2]} "
            f"p99_ms(worst round)={max(r['p99_ms'] for r in rounds)} non_2xx={sum(r['non_2xx'] for r in rounds)} "
            f"rounds_rps={[r['rps'] for r in rounds]}"
        )

    def ratio(name: str, base_name: str) -> str:
        per_round = [a / b for a, b in zip(customers[name], customers[base_name], strict=True)]
        mean = sum(customers[name]) / sum(customers[base_name])
        return f"{mean:.2f} (rounds: {', '.join(f'{r:.2f}' for r in per_round)})"

    print(f"bulk_vs_single_lean_customers_per_s={ratio('bulk_lean', 'single_lean')}")
    print(f"bulk_vs_single_full_customers_per_s={ratio('bulk_lean', 'single_full')}")
    print(f"bulk_gzip_vs_single_lean_customers_per_s={ratio('bulk_lean_gzip', 'single_lean')}")
    print(f"single_lean_vs_single_full_requests_per_s={ratio('single_lean', 'single_full')}")
    if args.baseline:
        baseline_ratio = ratio("baseline_bulk_lean", "baseline_single_lean")
        print(f"baseline_bulk_vs_baseline_single_lean_customers_per_s={baseline_ratio}")
        print(f"bulk_vs_baseline_bulk_customers_per_s={ratio('bulk_lean', 'baseline_bulk_lean')}")


if __name__ == "__main__":
    main()
