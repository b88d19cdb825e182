// chiso's web console: rankings, an agency's or a province's trends, the Biểu 06 report and a
// SQL console, drawn from the authenticated API. Every value is put in the page as text
// (textContent, never innerHTML): agencies name themselves in their own events.

import { t, lang, setLang, fmtInt, fmtPercent, fmtDecimal, fmtMonth } from "./i18n.js";

/* ------------------------------------------------------------------ the API */

const TOKEN_KEY = "chiso.token";
const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A request to chiso with the session's token; refusals become ApiError with their code. */
async function request(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token()) headers.set("Authorization", `Bearer ${token()}`);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body.error.code;
      message = body.error.message;
    } catch (_) {
      /* not a chiso error body */
    }
    if (response.status === 401) signIn(t("auth.refused"));
    throw new ApiError(response.status, code, message);
  }
  return response;
}

/** Rows of a SQL query as objects, with `$name` parameters. */
async function sql(query, params = {}) {
  const response = await request("/v1/sql", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sql: query, params, format: "json" }),
  });
  return response.json();
}

async function json(path) {
  return (await request(path)).json();
}

/** Saves an answer to a file: the server's name for it, or `fallback`. */
async function download(path, options, fallback) {
  const response = await request(path, options);
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = /filename="([^"]+)"/.exec(disposition);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: named ? named[1] : fallback });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/* ------------------------------------------------------------------ the page */

/** An element: attributes (never `style`), `on*` handlers, and children (text stays text). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value == null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const main = () => document.getElementById("main");

/** Replaces `element`'s children; arrays are flattened, null and false left out. */
function put(element, ...children) {
  element.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false));
}

/**
 * The drawing of one route. A later route (or the sign-in) makes an earlier drawing stale:
 * whatever its requests bring back afterwards is not shown.
 */
let drawing = 0;
function page() {
  const mine = ++drawing;
  const live = () => mine === drawing;
  return {
    live,
    show: (...children) => live() && put(main(), ...children),
    rendered: (view) => {
      if (live()) document.documentElement.dataset.rendered = view;
    },
  };
}

function failure(error) {
  const code = error instanceof ApiError ? error.code : "client_error";
  return h("p", { class: "error", role: "alert" }, h("strong", {}, `${t("common.error")} ${code}`), ": ", error.message);
}

function select(name, options, value, onchange) {
  const element = h("select", { name, onchange: (e) => onchange(e.target.value) });
  for (const [key, label] of options) element.append(h("option", { value: key, selected: key === value }, label));
  return element;
}

function field(label, control) {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

/** The hash route: `#/view/arg?key=value`. */
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  const [view, ...rest] = path.split("/");
  return { view: view || "rankings", arg: rest.map(decodeURIComponent).join("/"), params: new URLSearchParams(query || "") };
}

function go(view, arg, params) {
  const query = params ? new URLSearchParams(params).toString() : "";
  location.hash = `#/${view}${arg ? `/${encodeURIComponent(arg)}` : ""}${query ? `?${query}` : ""}`;
}

/* -------------------------------------------------------------- the domain */

const BANDS = [
  [90, "excellent"],
  [80, "good"],
  [70, "fair"],
  [50, "average"],
  [-Infinity, "weak"],
];
const band = (score) => BANDS.find(([floor]) => score >= floor)[1];
const METRICS = ["scorecard", "on_time_rate", "online_share"];
const TARGET_ONLINE = 20; // seed 004: a fifth of dossiers online
const TARGET_LEVEL34 = 30; // seed 004: 30 % of services at level 3–4
const ICT_LEADERS = ["48", "79", "01"]; // Đà Nẵng, TP.HCM, Hà Nội

let provinceNames = null;
async function provinces() {
  provinceNames ??= new Map(
    (await sql("SELECT code, name FROM agencies WHERE kind = 'province' ORDER BY code")).map((r) => [r.code, r.name])
  );
  return provinceNames;
}

async function scopeLabel(scope) {
  const [level, where, kind] = scope.split(":");
  if (level === "national") return t("scope.national");
  const name = (await provinces()).get(where) || where;
  return `${t(`kind.${kind}`)} — ${name}`;
}

function previousMonth(month) {
  const [y, m] = month.split("-").map(Number);
  return m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, "0")}`;
}

function formatMetric(metric, value) {
  return metric === "scorecard" ? fmtDecimal(value) : fmtPercent(value, 2);
}

/* ------------------------------------------------------------ the rankings */

async function rankingsView(page, params) {
  // Asked every time: the scheduler publishes a new month while the page is open.
  const rankingChoices = await sql(
    "SELECT month, scope, count(*) AS agencies FROM rankings WHERE metric = 'scorecard' GROUP BY month, scope ORDER BY month DESC, scope"
  );
  if (rankingChoices.length === 0) {
    page.show(h("h1", {}, t("rank.title")), h("p", { class: "muted" }, t("common.none")));
    return page.rendered("rankings");
  }
  const months = [...new Set(rankingChoices.map((r) => r.month))];
  const month = months.includes(params.get("month")) ? params.get("month") : months[0];
  const ofMonth = rankingChoices.filter((r) => r.month === month);
  const scopes = ofMonth.map((r) => r.scope);
  // The provinces nationally when there are provinces to rank, else a province's districts.
  const national = ofMonth.find((r) => r.scope === "national:province" && r.agencies > 1);
  const scope = scopes.includes(params.get("scope"))
    ? params.get("scope")
    : national ? national.scope : scopes.find((s) => s.endsWith(":district")) || scopes[0];
  const metric = METRICS.includes(params.get("metric")) ? params.get("metric") : "scorecard";
  const choose = (key) => (value) => go("rankings", "", { month, scope, metric, [key]: value });

  const scopeOptions = await Promise.all(scopes.map(async (s) => [s, await scopeLabel(s)]));
  const controls = h(
    "form",
    { class: "controls", onsubmit: (e) => e.preventDefault() },
    field(t("common.month"), select("month", months.map((m) => [m, fmtMonth(m)]), month, choose("month"))),
    field(t("common.scope"), select("scope", scopeOptions, scope, choose("scope"))),
    field(t("common.metric"), select("metric", METRICS.map((m) => [m, t(`metric.${m}`)]), metric, choose("metric")))
  );
  const heading = h("h1", {}, `${t("rank.title")}: ${t(`metric.${metric}`)}`);
  page.show(heading, controls, h("p", { class: "muted" }, t("common.loading")));

  const query = (m) => json(`/v1/rankings?${new URLSearchParams({ month: m, scope, metric })}`);
  let current, previous, names;
  try {
    [current, previous, names] = await Promise.all([
    query(month),
    query(previousMonth(month)),
    sql(
      "SELECT code, name FROM agencies WHERE code IN (SELECT agency FROM rankings WHERE month = $month AND scope = $scope AND metric = $metric)",
      { month, scope, metric }
    ),
  ]);
  } catch (error) {
    page.show(heading, controls, failure(error));
    return page.rendered("error");
  }
  const name = new Map(names.map((r) => [r.code, r.name]));
  const before = new Map(previous.map((r) => [r.agency, r.rank]));
  const rows = current.map((r) => ({
    ...r,
    name: name.get(r.agency) || r.agency,
    move: before.has(r.agency) ? before.get(r.agency) - r.rank : null,
  }));
  const subtitle = h(
    "p",
    { class: "muted" },
    `${scopeOptions.find(([s]) => s === scope)[1]} · ${fmtMonth(month)} · ${t("rank.count", { n: rows.length })} · ${t("rank.move")} ${t("rank.previous")} (${fmtMonth(previousMonth(month))})`
  );
  page.show(heading, controls, subtitle, leagueTable(rows, metric), metric === "scorecard" ? bandLegend() : null);
  page.rendered("rankings");
  performance.mark("chiso:rendered");
}

function bandLegend() {
  return h(
    "p",
    { class: "legend" },
    BANDS.map(([floor, name], i) =>
      h("span", { class: `band band-${name}` }, `${t(`band.${name}`)} ${i === 0 ? `≥ ${floor}` : floor === -Infinity ? `< ${BANDS[i - 1][0]}` : `${floor}–${BANDS[i - 1][0]}`}`)
    )
  );
}

function movement(move) {
  if (move == null) return h("span", { class: "move new" }, t("rank.new"));
  if (move > 0) return h("span", { class: "move up", title: `+${move}` }, `▲ ${move}`);
  if (move < 0) return h("span", { class: "move down", title: `${move}` }, `▼ ${-move}`);
  return h("span", { class: "move same" }, "=");
}

/** The league table; a header sorts it (again: the other way), moving the rows it has. */
function leagueTable(rows, metric) {
  const body = h("tbody");
  for (const row of rows) {
    const bar = h("span", { class: "fill" });
    // Every metric is out of 100 (points or a percentage).
    bar.style.width = `${Math.max(0, Math.min(100, row.value))}%`;
    row.tr = h(
      "tr",
      { "data-agency": row.agency },
      h("td", { class: "num" }, fmtInt(row.rank)),
      h("td", { class: "num" }, movement(row.move)),
      h("td", {}, h("a", { href: `#/agency/${encodeURIComponent(row.agency)}` }, row.name)),
      h("td", { class: "code col-code" }, row.agency),
      h("td", { class: "num value" }, h("span", { class: "valuebox" }, h("span", { class: "track" }, bar), formatMetric(metric, row.value))),
      metric === "scorecard" ? h("td", {}, h("span", { class: `band band-${band(row.value)}` }, t(`band.${band(row.value)}`))) : null
    );
    body.append(row.tr);
  }
  const keys = {
    rank: (a, b) => a.rank - b.rank || a.name.localeCompare(b.name, "vi"),
    move: (a, b) => (b.move ?? -Infinity) - (a.move ?? -Infinity) || a.rank - b.rank,
    name: (a, b) => a.name.localeCompare(b.name, "vi"),
    agency: (a, b) => (a.agency < b.agency ? -1 : a.agency > b.agency ? 1 : 0),
    value: (a, b) => b.value - a.value || a.rank - b.rank,
  };
  // Value and move sort highest first; a second click turns any order round.
  const highestFirst = new Set(["value", "move"]);
  let sorted = { key: "rank", reversed: false };
  const sortBy = (key) => {
    sorted = { key, reversed: sorted.key === key ? !sorted.reversed : false };
    const order = [...rows].sort(keys[key]);
    if (sorted.reversed) order.reverse();
    body.append(...order.map((row) => row.tr));
    const descending = highestFirst.has(key) !== sorted.reversed;
    for (const th of head.querySelectorAll("th[data-key]")) th.setAttribute("aria-sort", th.dataset.key === key ? (descending ? "descending" : "ascending") : "none");
  };
  const th = (key, label, cls) => h("th", { "data-key": key, class: cls, "aria-sort": key === "rank" ? "ascending" : "none" }, h("button", { type: "button", onclick: () => sortBy(key) }, label));
  const head = h(
    "tr",
    {},
    th("rank", t("rank.rank"), "num"),
    th("move", t("rank.move"), "num"),
    th("name", t("rank.agency")),
    th("agency", t("rank.code"), "col-code"),
    th("value", t(`metric_short.${metric}`), "num"),
    metric === "scorecard" ? h("th", {}, t("rank.band")) : null
  );
  return h("div", { class: "scroll" }, h("table", { class: "league", id: "league" }, h("thead", {}, head), body));
}

/* --------------------------------------------------- an agency or a province */

async function agencyView(page, code, params) {
  if (!code) return agencyPicker(page, params);
  const [agency] = await sql(
    `SELECT a.code, a.name, a.kind, a.parent, a.province, p.name AS parent_name, to_char(a.valid_to, '%Y-%m-%d') AS ceased,
            l.successor, s.name AS successor_name
     FROM agencies a LEFT JOIN agencies p ON p.code = a.parent
       LEFT JOIN agency_lineage l ON l.agency = a.code AND l.change = 'merged'
       LEFT JOIN agencies s ON s.code = l.successor
     WHERE a.code = $code`,
    { code }
  );
  if (!agency) {
    page.show(failure(new ApiError(404, "agency_not_found", code)));
    return page.rendered("error");
  }
  const isProvince = agency.kind === "province";
  const link = (to, name) => h("a", { href: `#/agency/${encodeURIComponent(to)}` }, name || to);
  // A unit that exists shows its predecessors' history with its own (rolled up to it); one
  // that ceased shows its own, and where its work went.
  const merged = agency.ceased
    ? []
    : await sql(
        `SELECT l.agency, a.name FROM agency_lineage l JOIN agencies a ON a.code = l.agency
         WHERE l.change = 'merged' AND current_agency(l.agency) = $code ORDER BY l.agency`,
        { code }
      );
  const facts = h(
    "p",
    { class: "muted" },
    `${t("agency.kind")}: ${t(`kind.${agency.kind}`)} · ${t("rank.code")}: ${agency.code}`,
    agency.parent ? [` · ${t("agency.parent")}: `, link(agency.parent, agency.parent_name)] : null,
    agency.ceased ? ` · ${t("agency.ceased", { date: agency.ceased })}` : null,
    agency.ceased && agency.successor ? [` ${t("agency.merged_into")} `, link(agency.successor, agency.successor_name)] : null
  );
  const history = merged.length
    ? h("p", { class: "muted lineage" }, `${t("agency.includes")}: `, merged.flatMap((m, i) => [i ? ", " : "", link(m.agency, m.name)]))
    : null;
  const panels = {
    counts: panel(t("agency.counts")),
    rates: panel(t("agency.rates")),
    rank: panel(t("agency.rank")),
    services: panel(t("agency.services")),
    level34: panel(t("agency.level34")),
    ict: isProvince ? panel(t("agency.ict")) : null,
  };
  page.show(h("h1", {}, agency.name), facts, history, h("div", { class: "panels" }, Object.values(panels).filter(Boolean).map((p) => p.element)));

  // A province's figures are those of all its agencies; an agency's are its own — with those
  // of the units merged into it, while it exists.
  const column = isProvince ? "province" : "agency";
  const where = agency.ceased
    ? `${column} = $code`
    : `${column} IN (SELECT code FROM agencies WHERE current_agency(code) = $code${isProvince ? " AND kind = 'province'" : ""})`;
  const monthly = sql(
    `SELECT to_char(day, '%Y-%m') AS month, sum(received) AS received, sum(received_online) AS online,
            sum(resolved) AS resolved, sum(resolved_early + resolved_on_time) AS in_time
     FROM agency_daily WHERE ${where} GROUP BY 1 ORDER BY 1`,
    { code }
  );
  const ranks = sql(
    `SELECT r.month, r.rank, r.value, n.agencies FROM rankings r
     JOIN (SELECT month, scope, metric, count(*) AS agencies FROM rankings GROUP BY 1, 2, 3) n
       ON n.month = r.month AND n.scope = r.scope AND n.metric = r.metric
     WHERE r.agency = $code AND r.scope = $scope AND r.metric = 'scorecard' ORDER BY r.month`,
    { code, scope: isProvince ? "national:province" : `province:${agency.province}:${agency.kind}` }
  );
  const levels = sql(
    `SELECT level, CAST(valid_from AS VARCHAR) AS valid_from, CAST(valid_to AS VARCHAR) AS valid_to FROM service_levels
     WHERE agency IN (SELECT code FROM agencies WHERE ${isProvince ? "province" : "code"} = $code)`,
    { code }
  );
  // Requests of a page already left are not drawn.
  const live = (draw) => (value) => page.live() && draw(value);
  await Promise.all([
    monthly.then(live((rows) => {
      const x = rows.map((r) => monthX(r.month));
      chart(panels.counts, x, [
        { label: t("agency.received"), values: rows.map((r) => r.received), color: "#1f5fa8" },
        { label: t("agency.resolved"), values: rows.map((r) => r.resolved), color: "#2a9d5c" },
      ], { y: fmtInt, whole: true });
      chart(panels.rates, x, [
        { label: t("agency.on_time"), values: rows.map((r) => (r.resolved ? (100 * r.in_time) / r.resolved : null)), color: "#2a9d5c" },
        { label: t("agency.online"), values: rows.map((r) => (r.received ? (100 * r.online) / r.received : null)), color: "#1f5fa8" },
        { label: t("agency.online_target"), values: rows.map(() => TARGET_ONLINE), color: "#c0392b", dash: [6, 4], points: false },
      ], { y: (v) => fmtPercent(v, 0), range: [0, 100] });
    })).catch((e) => [panels.counts, panels.rates].forEach((p) => p.fail(e))),
    ranks.then(live((rows) => {
      chart(panels.rank, rows.map((r) => monthX(r.month)), [
        { label: t("rank.rank"), values: rows.map((r) => r.rank), color: "#6c3483" },
      ], { y: fmtInt, whole: true, invert: true, range: [1, Math.max(2, ...rows.map((r) => r.agencies))], axisLabel: t("agency.rank_axis") });
    })).catch((e) => panels.rank.fail(e)),
    levels.then(live((spans) => serviceCharts(panels, spans))).catch((e) => [panels.services, panels.level34].forEach((p) => p.fail(e))),
    isProvince ? ictChart(page, panels.ict, code).catch((e) => panels.ict.fail(e)) : null,
  ]);
  page.rendered("agency");
}

/** Counts of services at each level at the end of each month, from their level spans. */
function serviceCharts(panels, spans) {
  if (spans.length === 0) {
    panels.services.empty(t("agency.no_services"));
    panels.level34.empty(t("agency.no_services"));
    return;
  }
  const first = spans.map((s) => s.valid_from).sort()[0].slice(0, 7);
  const last = new Date().toISOString().slice(0, 7);
  const months = [];
  for (let m = first; m <= last && months.length < 600; ) {
    months.push(m);
    const [y, mm] = m.split("-").map(Number);
    m = mm === 12 ? `${y + 1}-01` : `${y}-${String(mm + 1).padStart(2, "0")}`;
  }
  // The last month with any change, so the chart ends with the data, not today.
  const changes = spans.flatMap((s) => [s.valid_from, s.valid_to].filter(Boolean)).sort();
  const until = changes[changes.length - 1].slice(0, 7);
  const shown = months.filter((m) => m <= until);
  const counts = shown.map((m) => {
    const end = `${m}-31T23:59:59`;
    const at = [0, 0, 0, 0, 0];
    for (const s of spans) if (s.valid_from <= end && (!s.valid_to || s.valid_to > end)) at[s.level] += 1;
    return at;
  });
  const x = shown.map(monthX);
  const colors = ["", "#95a5a6", "#f39c12", "#1f5fa8", "#2a9d5c"];
  chart(panels.services, x, [1, 2, 3, 4].map((level) => ({
    label: t("agency.level", { n: level }),
    values: counts.map((c) => c[level]),
    color: colors[level],
  })), { y: fmtInt, whole: true });
  chart(panels.level34, x, [
    { label: t("agency.level34"), values: counts.map((c) => { const all = c[1] + c[2] + c[3] + c[4]; return all ? (100 * (c[3] + c[4])) / all : null; }), color: "#1f5fa8" },
    { label: t("agency.level34_target"), values: x.map(() => TARGET_LEVEL34), color: "#c0392b", dash: [6, 4], points: false },
  ], { y: (v) => fmtPercent(v, 0), range: [0, 100] });
}

/** The province's ICT Index rank against the leaders; made-up ranks dashed. */
async function ictChart(page, target, code) {
  const provinces = [code, ...ICT_LEADERS];
  const [ranks, events] = await Promise.all([
    sql(
      `SELECT i.year, i.province, a.name, i.rank FROM ict_index i JOIN agencies a ON a.code = i.province
       WHERE i.province IN ($p0, $p1, $p2, $p3) ORDER BY i.year`,
      { p0: provinces[0], p1: provinces[1], p2: provinces[2], p3: provinces[3] }
    ),
    // Whether a rank was made up is in its event's metadata ("synthetic": true); the latest
    // publication of a year and province is the one the table holds.
    sql("SELECT position, data, metadata FROM events WHERE type = 'IctIndexPublished' ORDER BY position"),
  ]);
  const synthetic = new Map();
  for (const e of events) {
    try {
      const data = JSON.parse(e.data);
      const metadata = e.metadata ? JSON.parse(e.metadata) : {};
      synthetic.set(`${data.year}|${data.province}`, metadata?.synthetic === true);
    } catch (_) {
      /* the catalog checked every event's data; metadata may be any JSON */
    }
  }
  const rows = ranks.map((r) => ({ ...r, synthetic: synthetic.get(`${r.year}|${r.province}`) ?? false }));
  if (!page.live()) return;
  if (rows.length === 0) return target.empty(t("common.none"));
  const years = [...new Set(rows.map((r) => r.year))];
  const shown = [code, ...ICT_LEADERS.filter((p) => p !== code)].filter((p) => rows.some((r) => r.province === p));
  const colors = ["#c0392b", "#1f5fa8", "#2a9d5c", "#8e44ad"];
  const series = [];
  shown.forEach((province, i) => {
    const of = years.map((y) => rows.find((r) => r.year === y && r.province === province));
    const label = of.find(Boolean).name;
    // Every rank, dashed, under the real ranks drawn solid: a made-up stretch stays dashed.
    series.push({ label: `${label} (${t("agency.synthetic")})`, values: of.map((r) => r?.rank ?? null), color: colors[i], dash: [4, 4], width: 1.5, legend: of.some((r) => r?.synthetic) });
    series.push({ label, values: of.map((r) => (r && !r.synthetic ? r.rank : null)), color: colors[i], width: province === code ? 3 : 2 });
  });
  chart(target, years, series, { y: fmtInt, whole: true, invert: true, range: [1, 63], time: false, axisLabel: t("agency.ict_rank") });
}

async function agencyPicker(page, params) {
  const names = await provinces();
  const province = names.has(params.get("province")) ? params.get("province") : names.has("26") ? "26" : [...names.keys()][0];
  const agencies = await sql("SELECT code, name, kind FROM agencies WHERE province = $province ORDER BY kind, code", { province });
  const list = h("ul", { class: "agencies" });
  const search = h("input", { type: "search", placeholder: t("agency.search"), "aria-label": t("agency.search") });
  const fill = () => {
    const needle = search.value.trim().toLocaleLowerCase("vi");
    put(list, 
      ...agencies
        .filter((a) => !needle || a.name.toLocaleLowerCase("vi").includes(needle) || a.code.toLowerCase().includes(needle))
        .slice(0, 400)
        .map((a) => h("li", {}, h("a", { href: `#/agency/${encodeURIComponent(a.code)}` }, a.name), " ", h("span", { class: "code" }, a.code), " ", h("span", { class: "muted" }, t(`kind.${a.kind}`))))
    );
  };
  search.addEventListener("input", fill);
  fill();
  page.show(
    h("h1", {}, t("agency.pick")),
    h("form", { class: "controls", onsubmit: (e) => e.preventDefault() }, field(t("report.province"), select("province", [...names], province, (p) => go("agency", "", { province: p }))), field(t("agency.search"), search)),
    list
  );
  page.rendered("picker");
}

/* --------------------------------------------------------------- the charts */

/** x of a month "2019-03": its first day, 00:00 UTC, in seconds (the charts draw in UTC). */
function monthX(month) {
  const [y, m] = month.split("-").map(Number);
  return Date.UTC(y, m - 1, 1) / 1000;
}

function panel(title) {
  const body = h("div", { class: "chart" }, h("p", { class: "muted" }, t("common.loading")));
  const element = h("section", { class: "panel" }, h("h2", {}, title), body);
  return {
    element,
    body,
    title,
    fail: (error) => put(body, failure(error)),
    empty: (text) => put(body, h("p", { class: "muted" }, text)),
  };
}

const charts = new Set();
const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6];

/** A uPlot line chart in `target`: `series` = [{label, values, color, dash, width, points, legend}]. */
function chart(target, x, series, options = {}) {
  if (x.length === 0) return target.empty(t("common.none"));
  const time = options.time !== false;
  const width = () => Math.max(280, target.body.clientWidth || 600);
  const monthLabel = (seconds) => {
    const d = new Date(seconds * 1000);
    return fmtMonth(`${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`);
  };
  const plot = new uPlot(
    {
      width: width(),
      height: 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: {
        x: { time },
        y: {
          dir: options.invert ? -1 : 1,
          range: options.range ? () => options.range : undefined,
        },
      },
      axes: [
        { values: time ? (u, ticks) => ticks.map(monthLabel) : (u, ticks) => ticks.map((v) => (Number.isInteger(v) ? String(v) : "")) },
        // Counts and ranks are whole numbers: no tick between two of them.
        { values: (u, ticks) => ticks.map((v) => options.y(v)), size: 64, label: options.axisLabel, incrs: options.whole ? WHOLE_STEPS : undefined },
      ],
      legend: { live: true },
      cursor: { points: { size: 6 } },
      series: [
        { label: time ? t("common.month") : t("common.year"), value: (u, v) => (v == null ? "" : time ? monthLabel(v) : String(v)) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: s.width ?? 2,
          dash: s.dash,
          spanGaps: false,
          points: { show: s.points ?? x.length < 40 },
          value: (u, v) => (v == null ? "—" : options.y(v)),
        })),
      ],
    },
    [x, ...series.map((s) => s.values)],
    target.body
  );
  put(target.body, plot.root);
  target.body.dataset.points = String(x.length);
  target.body.setAttribute("role", "img");
  target.body.setAttribute("aria-label", `${target.title}: ${series.filter((s) => s.legend !== false).map((s) => s.label).join(", ")}`);
  // Legend entries a reader does not need (the dashed copy of an all-real series) are hidden.
  series.forEach((s, i) => {
    if (s.legend === false) plot.root.querySelectorAll(".u-legend .u-series")[i + 1]?.classList.add("hidden");
  });
  charts.add({ plot, target, width });
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    for (const c of charts) {
      if (!c.plot.root.isConnected) charts.delete(c);
      else c.plot.setSize({ width: c.width(), height: 260 });
    }
  }, 100);
});

/* --------------------------------------------------------------- the report */

const REPORT_GROUPS = [
  ["received", ["carried_over", "received_online", "received_direct_postal", "received_total"]],
  ["resolved", ["resolved_early", "resolved_on_time", "resolved_late", "resolved_total"]],
  ["withdrawn", ["withdrawn"]],
  ["open", ["open_within_deadline", "open_overdue", "open_total"]],
];

async function reportView(page, params) {
  const names = await provinces();
  const year = String(new Date().getFullYear() - 1);
  const lastYear = (await sql("SELECT CAST(max(day) AS VARCHAR) AS last FROM agency_daily"))[0]?.last?.slice(0, 4) || year;
  const province = names.has(params.get("province")) ? params.get("province") : names.has("26") ? "26" : [...names.keys()][0];
  const from = /^\d{4}-\d{2}-\d{2}$/.test(params.get("from") || "") ? params.get("from") : `${lastYear}-01-01`;
  const to = /^\d{4}-\d{2}-\d{2}$/.test(params.get("to") || "") ? params.get("to") : `${lastYear}-12-31`;
  const inputs = {
    province: select("province", [...names], province, () => {}),
    from: h("input", { type: "date", name: "from", value: from }),
    to: h("input", { type: "date", name: "to", value: to }),
  };
  const query = { layout: "form", province, from, to };
  const path = (format) => `/v1/reports/dossiers?${new URLSearchParams({ ...query, format })}`;
  const controls = h(
    "form",
    {
      class: "controls",
      onsubmit: (e) => {
        e.preventDefault();
        go("report", "", { province: inputs.province.value, from: inputs.from.value, to: inputs.to.value });
      },
    },
    field(t("report.province"), inputs.province),
    field(t("report.from"), inputs.from),
    field(t("report.to"), inputs.to),
    h("button", { type: "submit" }, t("report.show")),
    h("span", { class: "spacer" }),
    h("button", { type: "button", id: "report-csv", onclick: () => download(path("csv"), {}, `bieu06-${from}-${to}.csv`).catch(alertError) }, `${t("common.download")} CSV`),
    h("button", { type: "button", id: "report-xlsx", onclick: () => download(path("xlsx"), {}, `bieu06-${from}-${to}.xlsx`).catch(alertError) }, `${t("common.download")} Excel`)
  );
  const heading = h("h1", {}, t("report.title"));
  const period = h("p", { class: "muted" }, `${names.get(province)} · ${from} – ${to}`);
  page.show(heading, controls, period, h("p", { class: "muted" }, t("common.loading")));
  let rows;
  try {
    rows = await json(path("json"));
  } catch (error) {
    // The form stays, so a wrong period can be put right.
    page.show(heading, controls, period, failure(error));
    return page.rendered("error");
  }
  const top = h("tr", {}, h("th", { rowspan: 2, scope: "col" }, t("report.stt")), REPORT_GROUPS.map(([group, columns]) => h("th", { colspan: columns.length, scope: "colgroup" }, t(`report.${group}`))));
  const sub = h("tr", {}, REPORT_GROUPS.flatMap(([, columns]) => columns.map((c) => h("th", { scope: "col" }, t(c === "withdrawn" ? "report.withdrawn_count" : `report.${c}`)))));
  const body = h(
    "tbody",
    {},
    rows.map((r) =>
      h(
        "tr",
        { class: `line-${r.line}`, "data-line": r.line, "data-agency": r.agency ?? "" },
        h("th", { scope: "row" }, r.name),
        REPORT_GROUPS.flatMap(([, columns]) => columns.map((c) => h("td", { class: "num", "data-column": c }, fmtInt(r[c]))))
      )
    )
  );
  page.show(heading, controls, period, h("div", { class: "scroll" }, h("table", { class: "report", id: "report" }, h("thead", {}, top, sub), body)));
  page.rendered("report");
}

function alertError(error) {
  main().prepend(failure(error));
}

/* ------------------------------------------------------------ the SQL console */

const SHOWN_ROWS = 10_000;
const PAGE_ROWS = 100;
const FORMATS = [["csv", "csv"], ["json", "json"], ["jsonl", "jsonl"], ["arrow", "arrow"], ["parquet", "parquet"], ["xlsx", "xlsx"]];

async function sqlView(page) {
  const editor = h("textarea", { id: "sql-editor", spellcheck: "false", rows: 10, "aria-label": "SQL" });
  editor.value = sessionStorage.getItem("chiso.sql") || "SELECT kind, count(*) AS agencies\nFROM agencies\nGROUP BY kind\nORDER BY agencies DESC";
  const status = h("p", { class: "muted", id: "sql-status", role: "status" });
  const result = h("div", { id: "sql-result" });
  const run = () => runQuery(editor.value, status, result);
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  editor.addEventListener("input", () => sessionStorage.setItem("chiso.sql", editor.value));
  const downloads = FORMATS.map(([format, ext]) =>
    h("button", { type: "button", "data-format": format, onclick: () => download("/v1/sql", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sql: editor.value, format }) }, `chiso.${ext}`).catch((e) => put(status, failure(e))) }, format.toUpperCase())
  );
  const tables = h("nav", { class: "tables", "aria-label": t("sql.tables") }, h("h2", {}, t("sql.tables")), h("p", { class: "muted" }, t("common.loading")));
  page.show(
    h("div", { class: "console" }, tables, h("div", { class: "work" }, editor, h("div", { class: "controls" }, h("button", { type: "button", id: "sql-run", class: "primary", onclick: run }, t("sql.run")), h("span", { class: "spacer" }), h("span", { class: "muted" }, `${t("common.download")}:`), downloads), status, result))
  );
  page.rendered("sql");
  try {
    const columns = await sql(
      "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns WHERE table_schema IN ('public', 'system') ORDER BY table_schema, table_name, ordinal_position"
    );
    const byTable = new Map();
    for (const c of columns) {
      const name = c.table_schema === "public" ? c.table_name : `${c.table_schema}.${c.table_name}`;
      if (!byTable.has(name)) byTable.set(name, []);
      byTable.get(name).push(c);
    }
    const insert = (text) => {
      const [start, end] = [editor.selectionStart, editor.selectionEnd];
      editor.setRangeText(text, start, end, "end");
      editor.focus();
    };
    put(tables, 
      h("h2", {}, t("sql.tables")),
      [...byTable].map(([name, cols]) =>
        h("details", {}, h("summary", {}, name), h("ul", {}, h("li", {}, h("button", { type: "button", class: "link", onclick: () => insert(name) }, `+ ${name}`)), cols.map((c) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => insert(c.column_name) }, c.column_name), " ", h("span", { class: "muted" }, c.data_type)))))
      )
    );
  } catch (error) {
    put(tables, failure(error));
  }
}

/** The SQL answer being read: a new run, or leaving the page, stops it. */
let running = null;

/** Runs `query` as JSON lines, keeps the first SHOWN_ROWS rows, and stops reading past them. */
async function runQuery(query, status, result) {
  running?.abort();
  const abort = new AbortController();
  running = abort;
  put(status, t("common.loading"));
  put(result);
  const started = performance.now();
  let response;
  try {
    response = await request("/v1/sql", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql: query, format: "jsonl" }),
      signal: abort.signal,
    });
  } catch (error) {
    if (running === abort) put(status, failure(error));
    return;
  }
  const id = response.headers.get("X-Chiso-Query-Id");
  const rows = [];
  let capped = false;
  let failed = null;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        if (!line) continue;
        const row = JSON.parse(line);
        const keys = Object.keys(row);
        if (keys.length === 1 && keys[0] === "error" && row.error && row.error.code && row.error.message) {
          failed = new ApiError(200, row.error.code, row.error.message);
        } else if (rows.length < SHOWN_ROWS) rows.push(row);
        else capped = true;
      }
      if (capped) {
        abort.abort();
        break;
      }
    }
  } catch (error) {
    if (!capped) failed ??= error;
  }
  if (running !== abort && !capped) return; // a newer run, or the page was left
  if (running === abort) running = null;
  const elapsed = performance.now() - started;
  const facts = [
    t("sql.rows", { n: rows.length }),
    `${t("sql.query_id")}: ${id}`,
    `${t("sql.time")}: ${fmtInt(Math.round(elapsed))} ms`,
  ].join(" · ");
  put(status, h("span", { id: "sql-facts" }, facts), capped ? h("span", { class: "warning", id: "sql-capped" }, ` ${t("sql.capped", { n: SHOWN_ROWS })}`) : null);
  if (failed) status.append(failure(failed));
  put(result, pagedTable(rows));
}

function pagedTable(rows) {
  if (rows.length === 0) return h("p", { class: "muted" }, t("sql.rows", { n: 0 }));
  const columns = Object.keys(rows[0]);
  const pages = Math.ceil(rows.length / PAGE_ROWS);
  const body = h("tbody");
  const label = h("span", { id: "sql-page" });
  let page = 0;
  const cell = (v) => (v == null ? h("td", { class: "null" }, "NULL") : h("td", { class: typeof v === "number" ? "num" : null }, typeof v === "object" ? JSON.stringify(v) : String(v)));
  const draw = () => {
    put(body, ...rows.slice(page * PAGE_ROWS, (page + 1) * PAGE_ROWS).map((r) => h("tr", {}, columns.map((c) => cell(r[c])))));
    label.textContent = t("sql.page", { p: page + 1, n: pages });
  };
  draw();
  const turn = (by) => () => {
    page = Math.min(pages - 1, Math.max(0, page + by));
    draw();
  };
  return h(
    "div",
    {},
    h("div", { class: "scroll" }, h("table", { class: "result", id: "sql-table" }, h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))), body)),
    pages > 1 ? h("p", { class: "pager" }, h("button", { type: "button", id: "sql-prev", onclick: turn(-1) }, t("sql.prev")), " ", label, " ", h("button", { type: "button", id: "sql-next", onclick: turn(1) }, t("sql.next"))) : null
  );
}

/* ------------------------------------------------------------- sign-in, start */

function signIn(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true });
  const signin = page();
  signin.show(
    h(
      "form",
      {
        class: "signin",
        id: "signin",
        onsubmit: (e) => {
          e.preventDefault();
          sessionStorage.setItem(TOKEN_KEY, input.value.trim());
          start();
        },
      },
      h("h1", {}, t("auth.title")),
      h("p", {}, t("auth.prompt")),
      message ? h("p", { class: "error", role: "alert" }, message) : null,
      field(t("auth.token"), input),
      h("button", { type: "submit", class: "primary" }, t("auth.submit"))
    )
  );
  signin.rendered("signin");
  input.focus();
}

const VIEWS = { rankings: rankingsView, agency: agencyView, report: reportView, sql: sqlView };

async function render() {
  delete document.documentElement.dataset.rendered;
  running?.abort();
  for (const c of charts) if (!c.plot.root.isConnected) charts.delete(c);
  const drawn = page();
  // A select that changed the route gets the focus back (keyboard users step through months).
  const focused = document.activeElement?.tagName === "SELECT" ? document.activeElement.name : null;
  try {
    const { view, arg, params } = route();
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.view === view);
      if (link.dataset.view === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    await (view === "agency" ? agencyView(drawn, arg, params) : (VIEWS[view] || rankingsView)(drawn, params));
    if (focused && drawn.live()) main().querySelector(`select[name="${focused}"]`)?.focus();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    drawn.show(failure(error));
    drawn.rendered("error");
  }
}

function relabel() {
  document.documentElement.lang = lang();
  document.getElementById("lang").textContent = lang() === "vi" ? "EN" : "VI";
  for (const element of document.querySelectorAll("[data-label]")) element.textContent = t(element.dataset.label);
}

/** Checks the token (none needed with auth off), then draws the route. */
async function start() {
  let probe;
  try {
    probe = await fetch("/v1/sql?q=SELECT%201", { headers: token() ? { Authorization: `Bearer ${token()}` } : {} });
  } catch (error) {
    page().show(failure(error));
    return;
  }
  if (probe.status === 401 || probe.status === 403) {
    const had = token();
    sessionStorage.removeItem(TOKEN_KEY);
    return signIn(had ? t("auth.refused") : null);
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = !token();
  await render();
}

document.getElementById("lang").addEventListener("click", () => {
  delete document.documentElement.dataset.rendered;
  setLang(lang() === "vi" ? "en" : "vi");
  provinceNames = null;
  relabel();
  start();
});
document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  start();
});
window.addEventListener("hashchange", render);
relabel();
start();
