"""The churn model's scheduled refit (app.core.schedule.run_every calls it every TIERWISE_CHURN_REFIT_HOURS): a new
version fitted on the bank's history of declines, which the features view scores with once committed."""

from sqlalchemy.ext.asyncio import async_sessionmaker


async def refit_churn_model(sessionmaker: async_sessionmaker) -> dict:
    """Fit, store, commit; what it returns is what the schedule logs (no personal value). numpy is imported here,
    not when the app starts."""
    from app.reports.churn import fit_and_store

    async with sessionmaker() as session:
        model = await fit_and_store(session, "schedule")
        await session.commit()
    if model is None:
        return {"version": None}
    return {"version": model.version, "rows": model.rows, "auc": model.metrics.get("auc")}
