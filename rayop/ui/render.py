"""HTML for the view's pages: semantic markup, escaped by construction, no inline script or style.

`tag()` escapes every text child and attribute value unless it is already `Markup`, so a name, message or
log line from the cluster can never become markup. Each page's `<main>` is split into regions with an `id`
and `data-live`; the browser script (`static/app.js`) polls the page and swaps only the regions whose
HTML changed, so keyboard focus and scroll positions survive live updates. Times are `<time>` elements
with an absolute fallback; the script shows them as relative ages.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rayop.base.times import format_time
from rayop.ui.history import ScaleChange
from rayop.ui.model import (
    ERROR,
    WARNING,
    ClusterRow,
    ConditionRow,
    EventRow,
    Fetched,
    GroupRow,
    JobRow,
    PodRow,
    Problem,
    RayServiceRow,
    ServePlot,
    ServeSide,
    ServicePortRow,
    TimelineEntry,
    Totals,
)

NONE = "\u2013"  # shown for "no value"


class Markup(str):
    """A string that is already HTML."""


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html.escape(str(value), quote=True))


def _children(children: Iterable[Any]) -> str:
    out: list[str] = []
    for c in children:
        if c is None or c is False:
            continue
        if isinstance(c, Markup):
            out.append(c)
        elif isinstance(c, (str, int, float)):
            out.append(html.escape(str(c), quote=False))
        else:
            out.append(_children(c))
    return "".join(out)


def tag(name: str, /, *children: Any, **attrs: Any) -> Markup:
    """`<name attrs>children</name>`; attribute `class_` is `class`, `data_x` is `data-x`; True is a bare
    attribute, None or False leaves it out."""
    parts = [name]
    for k, v in attrs.items():
        if v is None or v is False:
            continue
        key = k.rstrip("_").replace("_", "-")
        parts.append(key if v is True else f'{key}="{html.escape(str(v), quote=True)}"')
    open_ = "<" + " ".join(parts) + ">"
    if name in _VOID:
        return Markup(open_)
    return Markup(f"{open_}{_children(children)}</{name}>")


_VOID = frozenset({"meta", "link", "br", "input", "img", "hr"})


def json_island(id_: str, data: Any) -> Markup:
    """Data for the script as a non-executed JSON block; `<` is escaped so the text can never close it."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return Markup(f'<script type="application/json" id="{html.escape(id_)}">{text}</script>')


def when(text: str | float | None, *, rel: bool = True) -> Markup:
    """A timestamp: `<time>` with the RFC 3339 value; the script shows it relative."""
    if text in (None, "", 0, 0.0):
        return Markup('<span class="muted">\u2013</span>')
    iso = format_time(float(text)) if isinstance(text, (int, float)) else str(text)
    shown = iso.replace("T", " ").replace("Z", " UTC")
    return tag("time", shown, datetime=iso, data_rel="age" if rel else None)


def href_cluster(ns: str, name: str) -> str:
    return f"/clusters/{quote(ns, safe='')}/{quote(name, safe='')}"


def href_job(ns: str, name: str) -> str:
    return f"/jobs/{quote(ns, safe='')}/{quote(name, safe='')}"


def href_service(ns: str, name: str) -> str:
    return f"/services/{quote(ns, safe='')}/{quote(name, safe='')}"


_STATE_CLASS = {
    "ready": "ok",
    "Ready": "ok",
    "SUCCEEDED": "ok",
    "Complete": "ok",
    "RUNNING": "run",
    "Running": "run",
    "failed": "bad",
    "FAILED": "bad",
    "Failed": "bad",
    "ValidationFailed": "bad",
    "STOPPED": "bad",
    "suspended": "off",
    "Suspended": "off",
}


def badge(text: str) -> Markup:
    if not text:
        return Markup('<span class="muted">\u2013</span>')
    return tag("span", text, class_=f"badge b-{_STATE_CLASS.get(text, 'wait')}")


def problem_list(problems: Sequence[Problem], limit: int = 3) -> Markup:
    if not problems:
        return Markup('<span class="muted">none</span>')
    shown = sorted(problems, key=lambda p: -p.severity)[:limit]
    items = [
        tag(
            "li",
            tag("span", "Error: " if p.severity >= ERROR else "Warning: ", class_="sr-only"),
            p.text,
            class_="sev-err" if p.severity >= ERROR else "sev-warn",
        )
        for p in shown
    ]
    more = len(problems) - len(shown)
    if more > 0:
        items.append(tag("li", f"and {more} more", class_="muted"))
    return tag("ul", items, class_="problems")


def num(v: int | None) -> Markup:
    return esc(NONE) if v is None else esc(v)


def table(
    caption: str, head: Sequence[str | tuple[str, str]], body: Any, *, id_: str, numeric: Sequence[int] = ()
) -> Markup:
    """A captioned table in a focusable, labelled scroll region (wide tables scroll on a phone)."""
    ths = []
    for i, h in enumerate(head):
        # A (short, long) heading shows the short text and gives the long one to screen readers and tooltips.
        text, more = h if isinstance(h, tuple) else (h, "")
        ths.append(
            tag(
                "th",
                text,
                tag("span", f" ({more})", class_="sr-only") if more else None,
                scope="col",
                title=more or None,
                class_="num" if i in numeric else None,
            )
        )
    t = tag(
        "table",
        tag("caption", caption, class_="sr-only"),
        tag("thead", tag("tr", ths)),
        body,
        id=f"{id_}-table",
    )
    return tag("div", t, class_="scroll", role="region", aria_labelledby=f"{id_}-h", tabindex="0")


def section(id_: str, title: str, *content: Any, level: int = 2, extra: Any = None) -> Markup:
    return tag(
        "section",
        tag(f"h{level}", title, id=f"{id_}-h"),
        extra,
        *content,
        id=id_,
        data_live=True,
        aria_labelledby=f"{id_}-h",
    )


@dataclass(frozen=True)
class Banner:
    """What the page says above its content when data may be stale or incomplete."""

    kind: str = ""  # "" | "info" | "warn" | "error"
    text: str = ""


def banner(b: Banner) -> Markup:
    if not b.text:
        return tag("div", id="banner", data_live=True)
    role = "alert" if b.kind == "error" else "status"
    return tag(
        "div", tag("p", b.text), id="banner", data_live=True, class_=f"banner banner-{b.kind}", role=role
    )


# Layout ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assets:
    """Static file URLs with a content hash, so browsers can cache them for good."""

    css: str
    js: str
    plot_css: str
    plot_js: str


def page(
    title: str,
    main: Markup,
    assets: Assets,
    *,
    user: str = "",
    auth: bool = False,
    poll: bool = True,
    etag: str = "",
) -> str:
    account: Markup | None = None
    if auth and user:
        account = tag(
            "form",
            tag("span", f"Signed in as {user}", class_="who"),
            tag("button", "Sign out", type="submit"),
            method="post",
            action="/logout",
            class_="account",
        )
    head = tag(
        "head",
        tag("meta", charset="utf-8"),
        tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
        tag("meta", name="referrer", content="no-referrer"),
        tag("link", rel="icon", href="data:,"),
        tag("title", f"{title} · rayop"),
        tag("link", rel="stylesheet", href=assets.plot_css),
        tag("link", rel="stylesheet", href=assets.css),
        tag("script", src=assets.plot_js, defer=True),
        tag("script", src=assets.js, defer=True),
    )
    body = tag(
        "body",
        tag("a", "Skip to content", href="#main", class_="skip"),
        tag(
            "header",
            tag(
                "nav",
                tag("a", tag("span", "rayop", class_="brand"), " Ray on Kubernetes", href="/", class_="home"),
                aria_label="Main",
            ),
            tag("p", "Live updates on" if poll else "", id="live", role="status", class_="live"),
            account,
            class_="top",
        ),
        tag("main", main, id="main", tabindex="-1", data_poll="1" if poll else None, data_etag=etag or None),
        tag(
            "footer",
            "Read-only view from the rayop operator's caches. Times are shown as ages; hover for the date.",
        ),
    )
    return "<!doctype html>" + tag("html", head, body, lang="en")


def breadcrumb(*crumbs: tuple[str, str | None]) -> Markup:
    items = []
    for text, href in crumbs:
        items.append(tag("li", tag("a", text, href=href) if href else tag("span", text, aria_current="page")))
    return tag("nav", tag("ol", items), aria_label="Breadcrumb", class_="crumbs")


def error_main(title: str, message: str, *, back: bool = True) -> Markup:
    return Markup(
        breadcrumb(("Overview", "/"), (title, None))
        + tag(
            "div",
            tag("h1", title),
            tag("p", message, role="alert", class_="banner banner-error"),
            tag("p", tag("a", "Back to the overview", href="/")) if back else None,
            id="error",
            data_live=True,
        )
    )


# Overview -------------------------------------------------------------------------------------------


def _res(r: Any) -> list[Markup]:
    return [
        tag("td", r.cpu or NONE, class_="num"),
        tag("td", r.gpu or NONE, class_="num"),
        tag("td", r.memory or NONE, class_="num"),
    ]


def _workers(ready: int, desired: int, ray: int | None) -> Markup:
    text = f"{ready} / {desired}"
    if ray is not None:
        text += f" · Ray {ray}"
    return esc(text)


def overview_main(
    totals: Totals,
    clusters: Sequence[ClusterRow],
    jobs: Sequence[JobRow],
    services: Sequence[RayServiceRow],
    b: Banner,
    hidden: int = 0,
) -> Markup:
    summary = tag(
        "ul",
        tag(
            "li",
            tag("strong", totals.clusters),
            " RayClusters",
            f" ({totals.clusters_with_problems} with problems)" if totals.clusters_with_problems else "",
        ),
        tag("li", tag("strong", f"{totals.workers_ready} / {totals.workers_desired}"), " workers ready"),
        tag(
            "li",
            tag("strong", totals.jobs),
            " RayJobs",
            f" ({totals.jobs_running} running)" if totals.jobs_running else "",
            f", {totals.jobs_with_problems} with problems" if totals.jobs_with_problems else "",
        ),
        tag(
            "li",
            tag("strong", totals.services),
            " RayServices",
            f" ({totals.services_with_problems} with problems)" if totals.services_with_problems else "",
        ),
        class_="totals",
        id="totals",
        data_live=True,
    )
    head = Markup(tag("h1", "Overview") + banner(b) + summary)
    if hidden:
        head = Markup(
            head
            + tag(
                "p",
                f"{hidden} more {'object is' if hidden == 1 else 'objects are'} hidden: your account may not read "
                f"{'it' if hidden == 1 else 'them'}.",
                class_="muted",
            )
        )

    cluster_body: list[Markup] = []
    for c in clusters:
        rows = [
            tag(
                "tr",
                tag("th", tag("a", c.name, href=href_cluster(c.namespace, c.name)), scope="row"),
                tag("td", c.namespace),
                tag("td", badge(c.state)),
                tag("td", _workers(c.ready, c.desired, c.ray), class_="num"),
                *_res(c.resources),
                tag("td", when(c.created)),
                tag("td", problem_list(c.all_problems)),
                class_="cluster"
                + (" has-err" if c.severity >= ERROR else " has-warn" if c.severity >= WARNING else ""),
            )
        ]
        for g in c.groups:
            rows.append(
                tag(
                    "tr",
                    tag("th", tag("span", "group ", class_="sr-only"), g.name, scope="row", class_="grp"),
                    tag("td", c.namespace, class_="muted"),
                    tag("td", badge(g.state)),
                    tag("td", _workers(g.ready, g.desired, g.ray), class_="num"),
                    *_res(g.resources),
                    tag("td", ""),
                    tag("td", problem_list(g.problems) if g.problems else ""),
                    class_="group",
                )
            )
        cluster_body.append(tag("tbody", rows, data_key=f"{c.namespace}/{c.name}"))
    clusters_sec = section(
        "clusters",
        "RayClusters and worker groups",
        table(
            "RayClusters, each followed by its worker groups; problems first",
            [
                "Name",
                "Namespace",
                "State",
                ("Workers", "ready / desired, and how many Ray reports"),
                "CPUs",
                "GPUs",
                "Memory",
                "Age",
                "Problems",
            ],
            cluster_body or tag("tbody", tag("tr", tag("td", "No RayClusters.", colspan="9"))),
            id_="clusters",
            numeric=(3, 4, 5, 6),
        ),
    )
    job_rows = [
        tag(
            "tr",
            tag("th", tag("a", j.name, href=href_job(j.namespace, j.name)), scope="row"),
            tag("td", j.namespace),
            tag("td", badge(j.job_status)),
            tag("td", badge(j.deployment_status)),
            tag("td", tag("a", j.cluster, href=href_cluster(j.namespace, j.cluster)) if j.cluster else NONE),
            tag("td", tag("code", j.submission_id) if j.submission_id else NONE),
            tag("td", when(j.created)),
            tag("td", problem_list(j.problems)),
            class_="has-err" if j.severity >= ERROR else "has-warn" if j.severity else None,
        )
        for j in jobs
    ]
    jobs_sec = section(
        "jobs",
        "RayJobs",
        table(
            "RayJobs; problems first",
            [
                "Name",
                "Namespace",
                "Job status",
                "Deployment",
                "RayCluster",
                "Submission id",
                "Age",
                "Problems",
            ],
            tag("tbody", job_rows or tag("tr", tag("td", "No RayJobs.", colspan="8"))),
            id_="jobs",
        ),
    )
    svc_rows = [
        tag(
            "tr",
            tag("th", tag("a", s.name, href=href_service(s.namespace, s.name)), scope="row"),
            tag("td", s.namespace),
            tag(
                "td",
                badge(s.status),
                " ",
                tag("span", "upgrading", class_="badge b-run") if s.upgrading else None,
            ),
            tag(
                "td",
                tag("a", s.active.cluster, href=href_cluster(s.namespace, s.active.cluster))
                if s.active.cluster
                else NONE,
            ),
            tag(
                "td",
                tag("a", s.pending.cluster, href=href_cluster(s.namespace, s.pending.cluster))
                if s.pending.cluster
                else NONE,
            ),
            tag("td", s.endpoints, class_="num"),
            tag("td", ", ".join(f"{a.name} {a.status}" for a in s.active.apps) or NONE),
            tag("td", when(s.created)),
            tag("td", problem_list(s.problems)),
            class_="has-err" if s.severity >= ERROR else "has-warn" if s.severity else None,
        )
        for s in services
    ]
    svc_sec = section(
        "services",
        "RayServices",
        table(
            "RayServices; problems first",
            [
                "Name",
                "Namespace",
                "Status",
                "Active cluster",
                "Pending cluster",
                "Serve endpoints",
                "Applications",
                "Age",
                "Problems",
            ],
            tag("tbody", svc_rows or tag("tr", tag("td", "No RayServices.", colspan="9"))),
            id_="services",
            numeric=(5,),
        ),
    )
    return Markup(head + clusters_sec + jobs_sec + svc_sec)


# RayCluster page ------------------------------------------------------------------------------------


def _dl(*pairs: tuple[str, Any]) -> Markup:
    items = []
    for k, v in pairs:
        if v is None or v == "":
            continue
        items.append(tag("div", tag("dt", k), tag("dd", v)))
    return tag("dl", items, class_="facts")


def _events_table(id_: str, events: Fetched, allowed: bool) -> Markup:
    if not allowed:
        return section(
            id_, "Events", tag("p", "Your account may not list events in this namespace.", class_="muted")
        )
    rows: list[EventRow] = list(events.value or [])
    status = _fetch_note(events, "events")
    body = [
        tag(
            "tr",
            tag("td", when(e.t)),
            tag("td", tag("span", e.type, class_="sev-warn") if e.type == "Warning" else e.type),
            tag("td", e.reason),
            tag("td", e.message, class_="msg"),
            tag("td", e.count, class_="num"),
        )
        for e in rows
    ]
    content: Any = (
        table(
            "Latest events, newest first",
            ["When", "Type", "Reason", "Message", "Count"],
            tag("tbody", body),
            id_=id_,
            numeric=(4,),
        )
        if rows
        else tag("p", "No events in the last hour." if events.loaded else "Loading events…", class_="muted")
    )
    return section(id_, "Events", status, content)


def _fetch_note(f: Fetched, what: str) -> Markup | None:
    if f.error:
        return tag("p", f"Could not fetch {what}: {f.error}", class_="banner banner-warn", role="status")
    return None


def group_table(groups: Sequence[GroupRow]) -> Markup:
    rows = [
        tag(
            "tr",
            tag("th", g.name, scope="row"),
            tag("td", badge(g.state)),
            tag("td", g.desired, class_="num"),
            tag("td", num(g.replicas), class_="num"),
            tag("td", f"{g.min} to {'any' if g.max is None else g.max}", class_="num"),
            tag("td", g.ready, class_="num"),
            tag("td", num(g.ray), class_="num"),
            *_res(g.resources),
            tag("td", g.scaled_by),
            tag("td", g.last_set_by or NONE),
        )
        for g in groups
    ]
    return table(
        "Worker groups",
        [
            "Group",
            "State",
            "Desired",
            "Replicas",
            "Min to max",
            "Ready",
            "Ray-reported",
            "CPUs",
            "GPUs",
            "Memory",
            "Scaled by",
            "Replicas last set by",
        ],
        tag("tbody", rows or tag("tr", tag("td", "No worker groups.", colspan="12"))),
        id_="groups",
        numeric=(2, 3, 4, 5, 6, 7, 8, 9),
    )


_KEY_CLASSES = ("key k-desired", "key k-ready", "key k-ray")
CHANGE_KEY = "change (A Ray autoscaler, S Serve autoscaler, H HPA, U user, O operator)"


def _plot_figure(
    prefix: str, group: str, data: Mapping[str, Any], labels: tuple[str, str, str], unit: str
) -> Markup:
    metrics = ("desired", "ready", "ray")
    last = {m: next((v for v in reversed(data.get(m) or []) if v is not None), None) for m in metrics}
    changes = data.get("changes") or []
    summary = ", ".join(f"{label} {num(last[m])}" for m, label in zip(metrics, labels, strict=True) if label)
    if changes:
        c = changes[-1]
        summary += (
            f"; last change {c['before'] if c['before'] is not None else '?'} to {c['after']} by {c['by']}"
        )
    fid = f"{prefix}-{re.sub(r'[^A-Za-z0-9_-]', '-', group)}"
    return tag(
        "figure",
        tag(
            "div",
            class_="plot",
            id=f"{fid}-plot",
            data_plot=group,
            data_labels="|".join(labels),
            data_unit=unit,
            role="img",
            aria_label=f"{group}: {summary}",
        ),
        tag(
            "figcaption",
            tag("strong", group),
            " ",
            tag("span", summary, class_="plot-summary"),
            tag(
                "span",
                [
                    tag("span", label, class_=cls)
                    for label, cls in zip(labels, _KEY_CLASSES, strict=True)
                    if label
                ],
                tag("span", CHANGE_KEY, class_="key k-change"),
                class_="keys",
                aria_hidden="true",
            ),
        ),
        id=fid,
        class_="plotfig",
    )


def changes_table(id_: str, changes: Sequence[ScaleChange], *, unit: str = "workers") -> Markup:
    rows = [
        tag(
            "tr",
            tag("td", when(c.t)),
            tag("td", c.group),
            tag("td", f"{'?' if c.before is None else c.before} → {c.after}", class_="num"),
            tag("td", c.by),
            tag(
                "td",
                {
                    "watch": "seen live",
                    "events": "rebuilt from events",
                    "managedFields": "from managedFields",
                }.get(c.source, c.source),
                class_="muted",
            ),
        )
        for c in reversed(changes[-50:])
    ]
    if not rows:
        return tag("p", f"No changes of desired {unit} recorded yet.", class_="muted")
    return table(
        f"Changes of desired {unit}, newest first",
        ["When", "Group", f"Desired {unit}", "Changed by", "Source"],
        tag("tbody", rows),
        id_=id_,
        numeric=(2,),
    )


def scaling_section(
    id_: str,
    title: str,
    plots: Mapping[str, Any],
    changes: Sequence[ScaleChange],
    labels: tuple[str, str, str],
    unit: str,
    note: Markup | None = None,
) -> Markup:
    figs = [_plot_figure(id_, g, d, labels, unit) for g, d in plots.items()]
    return section(
        id_,
        title,
        note,
        json_island(f"{id_}-data", plots),
        tag("div", figs or tag("p", "Nothing recorded yet.", class_="muted"), class_="plots"),
        tag("h3", "Changes", id=f"{id_}-changes-h"),
        changes_table(f"{id_}-changes", changes, unit=unit),
    )


def cluster_main(
    c: ClusterRow,
    *,
    pods: Sequence[PodRow] | None,
    services: Sequence[ServicePortRow] | None,
    conditions: Sequence[ConditionRow],
    events: Fetched,
    events_allowed: bool,
    plots: Mapping[str, Any],
    changes: Sequence[ScaleChange],
    dashboard: str,
    ray_nodes: Fetched,
    b: Banner,
) -> Markup:
    head = Markup(
        breadcrumb(("Overview", "/"), (f"RayCluster {c.namespace}/{c.name}", None))
        + tag("h1", tag("span", "RayCluster ", class_="kind"), c.name)
        + banner(b)
    )
    if ray_nodes.error:
        ray_reported = Markup(
            tag("span", "unknown") + " " + tag("span", f"({ray_nodes.error})", class_="muted")
        )
    elif ray_nodes.loaded:
        ray_reported = Markup(
            esc(num(c.ray)) + " " + tag("span", "as of ", when(ray_nodes.at), class_="muted")
        )
    else:
        ray_reported = tag("span", "not fetched yet", class_="muted")
    facts = tag(
        "div",
        _dl(
            ("Namespace", c.namespace),
            ("State", badge(c.state)),
            ("Workers ready / desired", f"{c.ready} / {c.desired}"),
            ("Ray-reported workers", ray_reported),
            (
                "CPUs / GPUs / memory",
                f"{c.resources.cpu or NONE} / {c.resources.gpu or NONE} / {c.resources.memory or NONE}",
            ),
            ("Autoscaling", c.autoscaling),
            ("Ray version", c.ray_version),
            ("Owner", c.owner),
            ("Created", when(c.created)),
            (
                "Ray dashboard",
                tag("a", "open through the API server's service proxy", href=dashboard, rel="noreferrer")
                if dashboard
                else "no head Service yet",
            ),
        ),
        tag("h2", "Problems", id="problems-h"),
        problem_list(c.all_problems, limit=20),
        id="facts",
        data_live=True,
    )
    groups = section("groups", "Worker groups", group_table(c.groups))
    scaling = scaling_section(
        "scaling", "Scaling history", plots, changes, ("desired", "ready", "Ray-reported"), "workers"
    )
    if pods is None:
        pods_sec = section(
            "pods", "Pods", tag("p", "Your account may not list Pods in this namespace.", class_="muted")
        )
    else:
        pods_sec = section(
            "pods",
            "Pods",
            table(
                "Pods of this cluster",
                ["Name", "Group", "Phase", "Ready", "Restarts", "Reason", "IP", "Node", "Age"],
                tag(
                    "tbody",
                    [
                        tag(
                            "tr",
                            tag("th", p.name, scope="row"),
                            tag("td", p.group),
                            tag("td", badge("Terminating" if p.terminating else p.phase)),
                            tag("td", "yes" if p.ready else "no"),
                            tag("td", p.restarts, class_="num"),
                            tag("td", p.reason or NONE),
                            tag("td", p.ip or NONE),
                            tag("td", p.node or NONE),
                            tag("td", when(p.created)),
                        )
                        for p in pods
                    ]
                    or tag("tr", tag("td", "No Pods.", colspan="9")),
                ),
                id_="pods",
                numeric=(4,),
            ),
        )
    if services is None:
        svc_sec = section(
            "svcs",
            "Services",
            tag("p", "Your account may not list Services in this namespace.", class_="muted"),
        )
    else:
        svc_sec = section(
            "svcs",
            "Services",
            table(
                "Services of this cluster",
                ["Name", "Role", "Type", "Cluster IP", "Ports"],
                tag(
                    "tbody",
                    [
                        tag(
                            "tr",
                            tag("th", s.name, scope="row"),
                            tag("td", s.role or NONE),
                            tag("td", s.type),
                            tag("td", s.cluster_ip or NONE),
                            tag("td", s.ports or NONE),
                        )
                        for s in services
                    ]
                    or tag("tr", tag("td", "No Services.", colspan="5")),
                ),
                id_="svcs",
            ),
        )
    conds = section("conds", "Conditions", conditions_table(conditions))
    return Markup(
        head
        + facts
        + groups
        + scaling
        + pods_sec
        + svc_sec
        + conds
        + _events_table("events", events, events_allowed)
    )


def conditions_table(conditions: Sequence[ConditionRow]) -> Markup:
    if not conditions:
        return tag("p", "No conditions reported.", class_="muted")
    return table(
        "Conditions",
        ["Type", "Status", "Reason", "Message", "Since"],
        tag(
            "tbody",
            [
                tag(
                    "tr",
                    tag("th", c.type, scope="row"),
                    tag("td", c.status),
                    tag("td", c.reason or NONE),
                    tag("td", c.message or NONE, class_="msg"),
                    tag("td", when(c.since)),
                )
                for c in conditions
            ],
        ),
        id_="conds",
    )


# RayJob page ----------------------------------------------------------------------------------------


def timeline(id_: str, title: str, entries: Sequence[TimelineEntry]) -> Markup:
    if not entries:
        return section(id_, title, tag("p", "Nothing recorded yet.", class_="muted"))
    items = [
        tag(
            "li",
            when(e.t, rel=False),
            " ",
            tag("strong", e.what),
            f" — {e.detail}" if e.detail else "",
            class_=f"tl-{e.kind}",
        )
        for e in entries
    ]
    return section(id_, title, tag("ol", items, class_="timeline"))


def job_main(
    j: JobRow,
    *,
    entries: Sequence[TimelineEntry],
    logs: Fetched,
    logs_allowed: bool,
    cluster_exists: bool,
    b: Banner,
) -> Markup:
    head = Markup(
        breadcrumb(("Overview", "/"), (f"RayJob {j.namespace}/{j.name}", None))
        + tag("h1", tag("span", "RayJob ", class_="kind"), j.name)
        + banner(b)
    )
    cluster: Any = NONE
    if j.cluster:
        cluster = (
            tag("a", j.cluster, href=href_cluster(j.namespace, j.cluster))
            if cluster_exists
            else Markup(esc(j.cluster) + tag("span", " (deleted)", class_="muted"))
        )
    facts = tag(
        "div",
        _dl(
            ("Namespace", j.namespace),
            ("Job status", badge(j.job_status)),
            ("Deployment status", badge(j.deployment_status)),
            ("Submission id", tag("code", j.submission_id) if j.submission_id else "not submitted yet"),
            ("Submission mode", j.mode),
            ("RayCluster", cluster),
            ("Attempts", f"{j.succeeded} succeeded, {j.failed} failed (backoffLimit {j.backoff_limit})"),
            ("Entrypoint", tag("code", j.entrypoint) if j.entrypoint else None),
            ("Started", when(j.start) if j.start else None),
            ("Ended", when(j.end) if j.end else None),
            ("Reason", j.reason or None),
            ("Message", j.message or None),
        ),
        tag("h2", "Problems", id="problems-h"),
        problem_list(j.problems, limit=10),
        id="facts",
        data_live=True,
    )
    tl = timeline("timeline", "Timeline", entries)
    if not logs_allowed:
        logs_body: Any = tag(
            "p",
            "Your account may not reach this cluster's Ray dashboard (services/proxy), which holds the logs.",
            class_="muted",
        )
    elif logs.value:
        text = str(logs.value)
        logs_body = [
            tag("p", "Last lines of the driver's output, as of ", when(logs.at), ".", class_="muted"),
            tag("pre", tag("code", text), tabindex="0", aria_label="Driver logs", class_="logs"),
        ]
    elif not j.submission_id:
        logs_body = tag("p", "The job has not been submitted yet.", class_="muted")
    elif logs.loaded:
        logs_body = tag("p", "The driver has printed nothing yet.", class_="muted")
    else:
        logs_body = tag("p", "Fetching the driver's logs…", class_="muted")
    logs_sec = section("logs", "Driver logs", _fetch_note(logs, "the driver's logs"), logs_body)
    return Markup(head + facts + tl + logs_sec)


# RayService page ------------------------------------------------------------------------------------


def _side(id_: str, title: str, s: ServeSide, ns: str, exists: bool) -> Markup:
    if not s.cluster:
        return section(id_, title, tag("p", "None.", class_="muted"), level=3)
    cluster = (
        tag("a", s.cluster, href=href_cluster(ns, s.cluster))
        if exists
        else Markup(esc(s.cluster) + tag("span", " (not found)", class_="muted"))
    )
    apps_rows = []
    for a in s.apps:
        apps_rows.append(
            tag(
                "tr",
                tag("th", a.name, scope="row"),
                tag("td", "application"),
                tag("td", badge(a.status)),
                tag("td", a.message or NONE, class_="msg"),
            )
        )
        for d in a.deployments:
            apps_rows.append(
                tag(
                    "tr",
                    tag("th", tag("span", f"{a.name} / ", class_="muted"), d.name, scope="row", class_="grp"),
                    tag("td", "deployment"),
                    tag("td", badge(d.status)),
                    tag("td", d.message or NONE, class_="msg"),
                )
            )
    apps = (
        table(
            f"{title}: applications and deployments",
            ["Name", "Kind", "Status", "Message"],
            tag("tbody", apps_rows),
            id_=id_,
        )
        if apps_rows
        else tag("p", "No applications reported.", class_="muted")
    )
    return section(
        id_,
        title,
        _dl(
            ("RayCluster", cluster),
            ("Target capacity", f"{s.target_capacity}%" if s.target_capacity is not None else None),
            ("Traffic routed", f"{s.traffic_percent}%" if s.traffic_percent is not None else None),
            ("Traffic last migrated", when(s.migrated) if s.migrated else None),
        ),
        apps,
        level=3,
    )


def service_main(
    s: RayServiceRow,
    *,
    entries: Sequence[TimelineEntry],
    conditions: Sequence[ConditionRow],
    serve_service: ServicePortRow | None,
    active_exists: bool,
    pending_exists: bool,
    serve: ServePlot,
    events: Fetched,
    events_allowed: bool,
    b: Banner,
) -> Markup:
    head = Markup(
        breadcrumb(("Overview", "/"), (f"RayService {s.namespace}/{s.name}", None))
        + tag("h1", tag("span", "RayService ", class_="kind"), s.name)
        + banner(b)
    )
    facts = tag(
        "div",
        _dl(
            ("Namespace", s.namespace),
            ("Status", badge(s.status)),
            ("Upgrade", "in progress" if s.upgrading else "none in progress"),
            ("Upgrade strategy", s.strategy),
            ("Serve endpoints", s.endpoints),
            (
                "Serve Service",
                f"{serve_service.name} ({serve_service.type} {serve_service.cluster_ip or ''}; {serve_service.ports})"
                if serve_service
                else "not created yet",
            ),
            ("Created", when(s.created)),
        ),
        tag("h2", "Problems", id="problems-h"),
        problem_list(s.problems, limit=10),
        id="facts",
        data_live=True,
    )
    clusters = tag(
        "section",
        tag("h2", "Clusters", id="sides-h"),
        _side("active", "Active cluster", s.active, s.namespace, active_exists),
        _side("pending", "Pending cluster", s.pending, s.namespace, pending_exists),
        id="sides",
        data_live=True,
        aria_labelledby="sides-h",
    )
    serve_sec = scaling_section(
        "serve",
        "Serve replicas",
        serve.plots,
        serve.changes,
        ("target", "running", ""),
        "replicas",
        note=_fetch_note(serve.fetched, "Serve's replicas")
        if serve.fetched.error
        else (None if serve.fetched.loaded else tag("p", "Not fetched from Ray yet.", class_="muted")),
    )
    tl = timeline("timeline", "Upgrade timeline", entries)
    conds = section("conds", "Conditions", conditions_table(conditions))
    return Markup(
        head + facts + clusters + serve_sec + tl + conds + _events_table("events", events, events_allowed)
    )


# Sign-in --------------------------------------------------------------------------------------------


def login_main(message: str = "") -> Markup:
    return Markup(
        tag("h1", "Sign in")
        + (tag("p", message, role="alert", class_="banner banner-error") if message else Markup(""))
        + tag(
            "form",
            tag(
                "p",
                "This view shows what your Kubernetes account may read. Sign in with a bearer token, e.g. from ",
                tag("code", "kubectl create token <service-account>"),
                ".",
            ),
            tag("label", "Bearer token", for_="token"),
            tag(
                "textarea",
                id="token",
                name="token",
                rows="4",
                required=True,
                autocomplete="off",
                spellcheck="false",
            ),
            tag("button", "Sign in", type="submit"),
            method="post",
            action="/login",
            class_="login",
        )
    )
