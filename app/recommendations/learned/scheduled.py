"""The learned ranker's scheduled retrain (app.core.schedule.run_every calls it every TIERWISE_RANKER_RETRAIN_HOURS):
a new version trained on the last complete months, served when it beats the serving one on the held-out month."""

from sqlalchemy.ext.asyncio import async_sessionmaker

from app.core.config import Settings


async def retrain_ranker(sessionmaker: async_sessionmaker, settings: Settings) -> dict:
    """Train, store and (auto) serve; the counts and metrics it returns are what the schedule logs (no personal
    value: versions, months, metrics). A history too thin to learn from is a round with no new version (the serving
    one, or the rules, keep ranking), logged as such, not a failure. LightGBM is imported here, not when the app
    starts."""
    from app.recommendations.learned.compiled import cache_dir
    from app.recommendations.learned.registry import retrain
    from app.recommendations.learned.training import NotEnoughHistory

    try:
        result = await retrain(
            sessionmaker,
            settings.primary_policy,
            months=settings.ranker_months,
            seed=7,
            serve="auto",
            trained_by="schedule",
            compiled_dir=cache_dir(settings),
        )
    except NotEnoughHistory as error:
        return {"version": None, "skipped": str(error)}
    return {key: result[key] for key in ("version", "serving", "window_from", "window_until", "map7", "ece")}
