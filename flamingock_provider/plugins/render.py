"""Server-side HTML of the Flamingock view (Jinja with autoescape; no build step, no external asset).

Links are relative to the view (``../dags/<id>``) so that Airflow behind a base URL still works.
Airflow shows the view in a sandboxed iframe (no top navigation, no ``confirm()``): links into
Airflow move the UI's router from the page script, and the trigger form is inline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jinja2 import Environment

from flamingock_provider.plugins.approvals import AwaitingApproval
from flamingock_provider.plugins.fleet_view import render_matrix
from flamingock_provider.plugins.overview import PipelineOverview

STATE_CLASS = {
    "APPLIED": "ok",
    "MANUAL_MARKED_AS_APPLIED": "ok",
    "ROLLED_BACK": "muted",
    "MANUAL_MARKED_AS_ROLLED_BACK": "muted",
    "STARTED": "warn",
    "FAILED": "bad",
    "ROLLBACK_FAILED": "bad",
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flamingock</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:16px 24px;color:#1b1f24;background:#fff}
 h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:0} .sub{color:#57606a;margin:0 0 16px}
 section.pipeline{border:1px solid #d0d7de;border-radius:8px;padding:14px 16px;margin:0 0 18px}
 header.head{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:baseline;margin-bottom:8px}
 table{border-collapse:collapse;width:100%;margin:8px 0} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
 th{font-weight:600;color:#57606a;font-size:12px;text-transform:uppercase}
 code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:1px 4px;border-radius:4px;word-break:break-all}
 .state{font-weight:600;font-size:12px;padding:1px 6px;border-radius:10px;background:#eaeef2}
 .ok{background:#dafbe1;color:#116329} .bad{background:#ffebe9;color:#a40e26} .warn{background:#fff8c5;color:#7d4e00} .muted{color:#57606a}
 .action-apply{color:#0550ae;font-weight:600} .action-blocked{color:#a40e26;font-weight:600} .action-skip{color:#57606a}
 .blocked{background:#ffebe9;border:1px solid #ffcecb;border-radius:6px;padding:8px 10px;margin:8px 0}
 .lease{font-size:13px} .errors{color:#a40e26}
 .awaiting{background:#fff8c5;border:1px solid #eac54f;border-radius:6px;padding:8px 10px;margin:8px 0}
 .buttons{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
 button,a.button{font:inherit;font-size:13px;padding:3px 10px;border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa;color:#1b1f24;cursor:pointer;text-decoration:none}
 button.primary{background:#1f883d;border-color:#1a7f37;color:#fff} select{font:inherit;font-size:13px}
 form.trigger{margin:8px 0;padding:8px 10px;border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa}
 .risk{font-size:12px;font-weight:600} .risk-destructive{color:#a40e26} .risk-unknown,.risk-locking{color:#7d4e00} .risk-rewrite{color:#0550ae}
 .result{font-size:13px;margin-left:8px} details summary{cursor:pointer;color:#0550ae}
</style></head>
<body>
<h1>Flamingock</h1>
<p class="sub">Change-as-code pipelines under <code>{{ root }}</code> (paths relative to the DAGs folder) · signed in as {{ user }}</p>
{% if not pipelines %}<p>No pipeline folder under <code>{{ root }}</code>: add one (see the provider's README).</p>{% else %}
<table data-role="summary">
 <thead><tr><th>Pipeline</th><th>Applied</th><th>To apply</th><th>Blocked</th><th>Lease</th></tr></thead>
 <tbody>
 {% for p in pipelines %}
  <tr data-pipeline="{{ p.pipeline_id }}"><td><a href="#pipeline-{{ p.folder }}">{{ p.pipeline_id }}</a></td>
  {% if p.errors %}<td colspan="4" class="errors">invalid or unreadable: see below</td>{% else %}
   <td>{{ p.applied_ids|length }}</td><td>{{ p.units|selectattr("action", "equalto", "apply")|list|length }}</td>
   <td>{% if p.blocked %}<span class="state bad">{{ p.blocked|length }}</span>{% else %}0{% endif %}</td>
   <td>{% if p.lease %}<code>{{ p.lease.owner }}</code>{% else %}free{% endif %}</td>{% endif %}</tr>
 {% endfor %}
 </tbody>
</table>
{% endif %}
{% for p in pipelines %}
<section class="pipeline" id="pipeline-{{ p.folder }}" data-pipeline="{{ p.pipeline_id }}">
 <header class="head">
  <h2>{{ p.pipeline_id }}</h2>
  <a data-nav href="../dags/{{ p.dag_id }}">{{ p.dag_id }}</a>
  <span class="sub">{{ p.description }}</span>
 </header>
 {% if p.errors %}
  <div class="errors">{% for e in p.errors %}<p>{{ e }}</p>{% endfor %}</div>
 {% else %}
 <p class="lease" data-role="lease">Lease:
  {% if p.lease %}held by <code>{{ p.lease.owner }}</code> (token {{ p.lease.token }}) until {{ p.lease.expires_at }}
  — if that run is dead: <code>flamingock unlock {{ p.path }} --force</code>
  {% else %}free{% endif %}</p>
 <div class="buttons">
  <button class="primary" data-action="apply">Apply…</button>
  <button data-action="plan">Plan…</button>
  <button data-action="undo" {% if not p.applied_ids %}disabled title="nothing applied to undo"{% endif %}>Undo…</button>
  <a class="button" data-nav href="../dags/{{ p.dag_id }}">Airflow's trigger form ↗</a>
 </div>
 <form class="trigger" data-role="trigger-form" data-dag="{{ p.dag_id }}" hidden>
  Trigger <code>{{ p.dag_id }}</code> with action <strong data-role="action"></strong>
  <label data-role="undo-field">back to <select name="undo_to" aria-label="undo to">
   {% for id in p.applied_ids %}<option value="{{ id }}">{{ id }}</option>{% endfor %}
  </select> (the changes applied after it are rolled back, newest first)</label>
  <button type="submit" class="primary">Trigger run</button> <button type="button" data-role="cancel">Cancel</button>
  <span class="result" data-role="result"></span>
 </form>
 {% for a in awaiting.get(p.dag_id, []) %}
  <div class="awaiting" data-role="awaiting-approval" data-run="{{ a.run_id }}">Run <code>{{ a.run_id }}</code> waits for
   approval since {{ a.since }} UTC: {{ a.subject }} — <a data-nav href="{{ a.link }}">review and answer ↗</a></div>
 {% endfor %}
 {% for u in p.blocked %}
  <div class="blocked" data-role="blocked" data-unit="{{ u.id }}"><strong>{{ u.id }}</strong> is blocked: {{ u.reason }}<br>
   Resolve with: <code data-role="fix">{{ u.fix }}</code></div>
 {% endfor %}
 {% if p.fleet %}{{ fleet_html(p.fleet, state_class) }}{% endif %}
 <table data-role="units">
  <thead><tr><th>Stage</th><th>Change</th><th>State</th><th>When (UTC)</th><th>Run</th><th>Who</th><th>Next action</th><th>Risk</th><th>Impact</th><th>Note</th></tr></thead>
  <tbody>
  {% for u in p.units %}
   <tr data-unit="{{ u.id }}">
    <td>{{ u.stage }}</td><td><code>{{ u.id }}</code></td>
    <td><span class="state {{ state_class.get(u.state or '', '') }}">{{ u.state or '—' }}</span></td>
    <td data-role="when">{{ u.changed_at or '' }}</td>
    <td data-role="run">{% if u.dag_id and u.run_id %}<a data-nav href="../dags/{{ u.dag_id }}/runs/{{ u.run_id }}">{{ u.run_id }}</a>{% elif u.run_id %}<code>{{ u.run_id }}</code>{% endif %}</td>
    <td data-role="who">{{ u.who or '' }}</td>
    <td class="action-{{ u.action }}">{{ u.action }}</td>
    <td data-role="risk"><span class="risk risk-{{ u.risk or 'none' }}">{{ u.risk or '' }}</span>
     {% if u.reasons and u.action == 'apply' %}<div class="sub" data-role="reasons">{{ u.reasons|join('; ') }}</div>{% endif %}</td>
    <td data-role="impact">{{ u.impact or '' }}</td>
    <td data-role="note">{% if u.fix %}<code>{{ u.fix }}</code>{% elif u.note %}{{ u.note }}{% endif %}</td>
   </tr>
  {% endfor %}
  </tbody>
 </table>
 <details {% if p.history and p.history[0].error %}open{% endif %}>
  <summary>Audit history ({{ p.history_total }} entries{% if p.history_total > p.history|length %}, newest {{ p.history|length }} shown{% endif %})</summary>
  <table data-role="history">
   <thead><tr><th>When (UTC)</th><th>Change</th><th>State</th><th>Action</th><th>Run</th><th>Approved by</th><th>Bundle</th><th>Error</th></tr></thead>
   <tbody>
   {% for h in p.history %}
    <tr><td>{{ h.created_at }}</td><td><code>{{ h.change_id }}</code></td>
     <td><span class="state {{ state_class.get(h.state, '') }}">{{ h.state }}</span></td><td>{{ h.action }}</td>
     <td>{% if h.dag_id and h.run_id %}<a data-nav href="../dags/{{ h.dag_id }}/runs/{{ h.run_id }}">{{ h.run }}</a>{% else %}<code>{{ h.run }}</code>{% endif %}</td><td>{{ h.approved_by or '' }}</td>
     <td>{% if h.bundle_version %}<code title="{{ h.bundle_version }}">{{ h.bundle_version[:12] }}</code>{% endif %}</td>
     <td class="errors">{{ h.error or '' }}</td></tr>
   {% endfor %}
   </tbody>
  </table>
 </details>
 {% endif %}
</section>
{% endfor %}
<script>
// Airflow shows this page in a sandboxed iframe (no top navigation, no modal dialogs): links into
// Airflow move its router instead, and the trigger form is inline.
function openInAirflow(event) {
  if (window.top === window) return;
  try {
    const url = new URL(event.currentTarget.href);
    window.top.history.pushState({}, "", url.pathname + url.search);
    window.top.dispatchEvent(new PopStateEvent("popstate"));
    event.preventDefault();
  } catch (err) { /* not the same origin: let the browser follow the link */ }
}
function bindLinks(root) { root.querySelectorAll("a[data-nav]").forEach((a) => a.addEventListener("click", openInAirflow)); }
bindLinks(document);
document.querySelectorAll("section.pipeline").forEach((section) => {
  const form = section.querySelector("[data-role=trigger-form]");
  if (!form) return;
  const out = form.querySelector("[data-role=result]");
  section.querySelectorAll("button[data-action]").forEach((button) => button.addEventListener("click", () => {
    form.dataset.action = button.dataset.action;
    form.querySelector("[data-role=action]").textContent = button.dataset.action;
    form.querySelector("[data-role=undo-field]").hidden = button.dataset.action !== "undo";
    out.textContent = "";
    form.hidden = false;
  }));
  form.querySelector("[data-role=cancel]").addEventListener("click", () => { form.hidden = true; });
  form.addEventListener("submit", async (event) => {
    // Airflow's own REST API, with the signed-in user's session and permissions.
    event.preventDefault();
    const dag = form.dataset.dag, action = form.dataset.action;
    const conf = {action: action, undo_to: action === "undo" ? form.elements.undo_to.value : null};
    out.textContent = "triggering…";
    const response = await fetch(`../api/v2/dags/${encodeURIComponent(dag)}/dagRuns`, {
      method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({logical_date: null, conf: conf})});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      out.textContent = `not triggered (HTTP ${response.status}): ${JSON.stringify(body.detail || body)}`;
      return;
    }
    const link = document.createElement("a");
    link.href = `../dags/${encodeURIComponent(dag)}/runs/${encodeURIComponent(body.dag_run_id)}`;
    link.dataset.nav = "";
    link.textContent = `run ${body.dag_run_id} queued`;
    link.addEventListener("click", openInAirflow);
    out.replaceChildren(link);
  });
});
</script>
</body></html>
"""

LOGIN_NEEDED = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Flamingock</title></head>
<body style="font:14px system-ui,sans-serif;padding:24px"><h1>Flamingock</h1>
<p>{{ detail }}: sign in to Airflow first, then open this page again.</p>
<p><a href="../auth/login?next={{ next|urlencode }}">Sign in to Airflow</a></p></body></html>
"""

_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_page = _env.from_string(PAGE)
_login = _env.from_string(LOGIN_NEEDED)


def render_page(
    pipelines: Sequence[PipelineOverview],
    *,
    root: str,
    user: str,
    awaiting: Mapping[str, Sequence[AwaitingApproval]] | None = None,
) -> str:
    """Return the HTML of the view; ``awaiting``: the runs of each DAG id waiting for an approval."""
    return _page.render(
        pipelines=pipelines,
        root=root,
        user=user,
        state_class=STATE_CLASS,
        fleet_html=render_matrix,
        awaiting=awaiting or {},
    )


def render_login_needed(detail: str, next_url: str) -> str:
    """Return the HTML shown with a 401/403: what failed and where to sign in."""
    return _login.render(detail=detail, next=next_url)
