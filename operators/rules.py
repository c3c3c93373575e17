"""Policy evaluation: drift rows → an action plan, within the spec's guards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_reconcile.provider.audited import AuditDraft, ReconcileBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_reconcile.core.spec import Spec


class EvaluateRulesOperator(ReconcileBaseOperator):
    """Evaluate the spec's rules on the drift report from ``drift_task_id``.

    :param freshness_task_id: the freshness sensor; a stale source downgrades automatic decisions to review
    """

    ui_color = "#e8fdf0"

    def __init__(self, *, drift_task_id: str, freshness_task_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drift_task_id = drift_task_id
        self.freshness_task_id = freshness_task_id

    def run(self, context: Context, spec: Spec, audit: AuditDraft) -> dict[str, Any]:
        from airflow_reconcile.core.errors import GuardTripped
        from airflow_reconcile.core.rules import blast_population
        from airflow_reconcile.provider.compat import AirflowFailException

        drift_m = self.pull(context, self.drift_task_id)
        audit.inputs.append(drift_m)
        freshness = context["ti"].xcom_pull(task_ids=self.freshness_task_id) if self.freshness_task_id else None
        stale = bool((freshness or {}).get("stale"))
        population = blast_population(drift_m["meta"]["desired_rows"], drift_m["meta"]["actual_rows"])
        scope = self.run_scope(context, spec, audit)
        if scope is not None:  # never the scope's own size: a few keys would always look like a mass change
            if self.scope_population is None:  # run_scope refuses such a scope first; never the scope's size
                raise AirflowFailException(f"{spec.dag_id}: a scoped run needs a full run before it")
            population = int(self.scope_population["rows"])
            audit.details["population"] = {"rows": population, "from": "the newest full run"}
        from airflow_reconcile.core.scope import ScopeError
        from airflow_reconcile.core.steps import plan_drift

        try:
            plan, summary = plan_drift(spec, self.read_frame(drift_m), population, stale, scope)
        except GuardTripped as exc:
            audit.details["guard"] = str(exc)
            raise AirflowFailException(f"guard tripped: {exc}") from None
        except ScopeError as exc:  # a plan that acts outside its scope: refused whole
            raise AirflowFailException(str(exc)) from None
        manifest = self.workspace(spec, context).write("plan", plan, policy_version=spec.policy_version)
        self.log.info("plan: %s -> %s", summary.to_dict(), manifest.uri)
        if summary.unhandled:
            self.log.warning(
                "%d drift row(s) no rule handles (%s; drift.unhandled: %s); first: %s", summary.unhandled,
                ", ".join(f"{k} {n}" for k, n in sorted(summary.unhandled_by_kind.items())), spec.drift.unhandled,
                "; ".join(f"{u['entity']} {u['kind']}" + (f" in {u['columns']}" if u["columns"] else "")
                          for u in summary.unhandled_examples),
            )  # fmt: skip
        if summary.undecidable or summary.unrendered:
            self.log.warning(
                "sent to review instead of written: %d row(s) with a value a condition cannot read, %d that would "
                "write an empty or missing value; first: %s", summary.undecidable, summary.unrendered,
                "; ".join(f"{h['entity']} ({h['rule']}): {h['reason']}" for h in summary.held_back),
            )  # fmt: skip
        audit.outputs.append(manifest.to_dict())
        audit.details["plan"] = summary.to_dict()
        self.set_outlet_extra(
            context,
            {"spec": spec.name, "run_id": context["run_id"], "uri": manifest.uri, "rows": manifest.rows,
             "content_hash": manifest.content_hash, "policy_version": spec.policy_version,
             "actions": summary.actions, "unhandled": summary.unhandled},
        )  # fmt: skip
        if summary.unhandled and spec.drift.unhandled == "fail":
            from airflow_reconcile.core.pipeline import unhandled_text

            # Policy, not a transient error: failed once, nothing applied; the plan and this record say what.
            raise AirflowFailException(unhandled_text(spec, summary) + "; nothing was applied")
        return {**manifest.to_dict(), "summary": summary.to_dict()}
