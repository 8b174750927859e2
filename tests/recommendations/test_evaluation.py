"""The offline evaluation: MAP@7 of the service's ranking and of the learned ranker beside popularity and co-holding
on generated snapshots."""

import csv
import random

from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.recommendations.evaluation import average_precision, evaluate

PRODUCTS = ["cco_fin", "dela_fin", "ecue_fin", "recibo", "nomina", "tjcr_fin"]
MONTHS = ["2016-01-28", "2016-02-28", "2016-03-28", "2016-04-28"]


def write_snapshots(path, customers=150, seed=3) -> None:
    """Long-term deposits are widely held but nobody opens one (popularity is misled); e-account holders add
    direct debits month after month (an add rate to learn); payroll customers drop their payroll and take it
    back (a win-back pattern); a few add cards at random."""
    rng = random.Random(seed)
    header = ["fecha_dato", "ncodpers", "segmento", "fecha_alta"] + [f"ind_{p}_ult1" for p in PRODUCTS]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for c in range(customers):
            deposit, online, payroll = rng.random() < 0.6, rng.random() < 0.5, rng.random() < 0.4
            debit_from = rng.choice([1, 2, 3, 9]) if online else 9
            for m, month in enumerate(MONTHS):
                held = {"cco_fin"} | ({"dela_fin"} if deposit else set())
                if online:
                    held.add("ecue_fin")
                    if m >= debit_from:
                        held.add("recibo")
                if payroll and m in (0, 3):
                    held.add("nomina")
                if m == 3 and rng.random() < 0.1:
                    held.add("tjcr_fin")
                segment = "02 - PARTICULARES" if c % 3 else "01 - TOP"
                writer.writerow([month, 1000 + c, segment, "2010-05-01"] + [int(p in held) for p in PRODUCTS])


def test_average_precision_at_7():
    assert average_precision({"a"}, ["a", "b"]) == 1.0
    assert average_precision({"a", "b"}, ["x", "a", "y", "b"]) == (1 / 2 + 2 / 4) / 2
    assert average_precision(set(), ["a"]) == 0.0


async def test_recommender_and_learned_ranker_beat_both_baselines_on_history_they_can_learn_from(
    scratch_database, test_settings, tmp_path
):
    path = tmp_path / "snapshots.csv"
    write_snapshots(path)
    url = scratch_database()
    upgrade_to_head(url)
    engine = create_async_engine(url)
    try:
        result = await evaluate(create_sessionmaker(engine), test_settings, path)
    finally:
        await engine.dispose()
    assert result["customers"] == 150 and result["month"] == "2016-03-28"
    for name in ("map7_learned", "map7_recommender", "map7_popularity", "map7_co_holding"):
        assert 0.0 <= result[name] <= 1.0
    for ranking in ("map7_recommender", "map7_learned"):
        assert result[ranking] > result["map7_popularity"]
        assert result[ranking] > result["map7_co_holding"]
    # trained on the month pair before the evaluated one, its last month held out
    assert result["learned_held_out_month"] == "2016-02-01" and result["learned_held_out_map7"] > 0.5
