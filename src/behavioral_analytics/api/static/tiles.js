// The tiles the page's filters narrow besides the panels: the filtered events per day over the
// picker's range (/v1/series), and today's sessions (/v1/sessions) and first funnel
// (/v1/funnels/NAME), each asked with every filter. A tile answered from the raw events says so
// ("from raw events (N scanned)"); a refused scan is the tile's message, its numbers blank; a
// failed refresh keeps the numbers, marked (window.baStale).
// Without filters the sessions and funnel tiles are the live document's again.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const filters = window.baFilters;
  const stale = window.baStale;
  const numberFormat = new Intl.NumberFormat("en-US");
  let loading = 0;

  async function load() {
    const mine = ++loading;
    const chosen = filters.list();
    const live = window.baLive && window.baLive.last;
    if (!chosen.length) {
      $("filter-card").hidden = true;
      filters.note($("sessions-note"), "");
      filters.note($("funnel-note"), "");
      if (live) {
        window.baLive.drawSessions(live.sessions);
        window.baLive.drawFunnel(live.funnel);
      }
      return;
    }
    $("filter-name").textContent = chosen.map((f) => `${filters.title(f.dimension)}: ${f.value}`).join(" · ");
    const jobs = [series(mine)];
    if (live) jobs.push(sessions(live, mine), funnel(live, mine));
    await Promise.all(jobs);
  }

  // -- events per day over the range ----------------------------------------------------------

  async function series(mine) {
    const range = filters.range;
    if (!range) return;
    const params = new URLSearchParams({ granularity: "day", from: range.from, to: range.to });
    if (range.compare) params.set("compare", "true");
    const { answer, problem, failure } = await filters.ask("/v1/series", params);
    if (mine !== loading) return;
    $("filter-card").hidden = false;
    if (stale.settle($("filter-card"), failure, filters.key(range))) return;
    if (problem) {
      blankSeries(failure ? "" : problem);
      return;
    }
    const total = $("filter-total");
    const before = $("filter-previous");
    const body = answer.body;
    const current = body.current || body;
    const previous = body.previous || null;
    const sum = (points) => points.reduce((n, point) => n + point.total_events, 0);
    total.dataset.value = String(sum(current.points));
    total.textContent = numberFormat.format(sum(current.points)) + " events";
    before.hidden = !previous;
    before.dataset.value = previous ? String(sum(previous.points)) : "";
    before.textContent = previous ? `previous ${numberFormat.format(sum(previous.points))}` : "";
    const peak = Math.max(1, ...current.points.map((point) => point.total_events));
    $("filter-days").replaceChildren(...current.points.map((point) => day(point, peak)));
    const source = filters.source(body);
    filters.note($("filter-note"), source || "Events per day over the range, from the live breakdowns.");
    $("filter-note").dataset.source = filters.origin(body);
  }

  function blankSeries(problem) {
    const total = $("filter-total");
    const before = $("filter-previous");
    total.dataset.value = "";
    total.textContent = "–";
    before.hidden = true;
    before.dataset.value = "";
    $("filter-days").replaceChildren();
    filters.note($("filter-note"), problem, true);
  }

  function day(point, peak) {
    const li = document.createElement("li");
    li.dataset.period = point.period;
    li.dataset.events = String(point.total_events);
    const users = point.unique_users === null || point.unique_users === undefined ? "" : String(point.unique_users);
    li.dataset.users = users;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = point.period;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent =
      numberFormat.format(point.total_events) +
      (users ? ` · ${numberFormat.format(point.unique_users)} users` : "") +
      (point.exact === false ? " · may be in (other)" : "");
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = ((100 * point.total_events) / peak).toFixed(1) + "%";
    track.append(fill);
    li.append(name, count, track);
    return li;
  }

  // -- today's sessions and funnel ------------------------------------------------------------

  async function sessions(live, mine) {
    const today = live.periods.day;
    const params = new URLSearchParams({ granularity: "day", from: today, to: today });
    const { answer, problem, failure } = await filters.ask("/v1/sessions", params);
    if (mine !== loading) return;
    if (stale.settle($("sessions-card"), failure, filters.key())) return;
    if (problem) {
      window.baLive.drawSessions(null);
      filters.note($("sessions-note"), failure ? "" : problem, true);
      return;
    }
    const point = (answer.body.points || [])[0];
    window.baLive.drawSessions(point || { sessions: 0, final: false });
    $("sessions-state").textContent = "filtered";
    filters.note($("sessions-note"), filters.source(answer.body));
    $("sessions-note").dataset.source = filters.origin(answer.body);
  }

  async function funnel(live, mine) {
    if (!live.funnel) return;
    const today = live.periods.day;
    const params = new URLSearchParams({ from: today, to: today });
    const { answer, problem, failure } = await filters.ask("/v1/funnels/" + encodeURIComponent(live.funnel.name), params);
    if (mine !== loading) return;
    if (stale.settle($("funnel-card"), failure, filters.key())) return;
    const steps = live.funnel.steps;
    if (problem) {
      window.baLive.drawFunnel({ name: live.funnel.name, steps, users: steps.map(() => 0), conversion: [] });
      for (const li of document.querySelectorAll("#funnel-steps li")) {
        li.dataset.users = "";
        li.querySelector(".count").textContent = "–";
      }
      filters.note($("funnel-note"), failure ? "" : problem, true);
      return;
    }
    const found = (answer.body.days || [])[0];
    const users = found ? found.users : steps.map(() => 0);
    const conversion = found ? found.conversion : steps.slice(1).map(() => null);
    window.baLive.drawFunnel({ name: live.funnel.name, steps, users, conversion });
    filters.note($("funnel-note"), filters.source(answer.body));
    $("funnel-note").dataset.source = filters.origin(answer.body);
  }

  filters.onChange(load);
  document.addEventListener("dashboard-range", load);
  // A new read key: nothing of the previous one's (dashboard.js blanks the sessions and funnel).
  document.addEventListener("dashboard-key", () => {
    loading++;
    $("filter-card").hidden = true;
    blankSeries("");
    filters.note($("sessions-note"), "");
    filters.note($("funnel-note"), "");
  });
  // The range's document failed, so the filtered days were not asked again (the sessions and
  // funnel tiles, asked with it, neither).
  document.addEventListener("dashboard-range-failed", (event) => {
    if (!filters.list().length) return;
    if (filters.range && !stale.failed($("filter-card"), event.detail, filters.key(filters.range))) blankSeries("");
    for (const id of ["sessions-card", "funnel-card"]) stale.failed($(id), event.detail, filters.key());
  });
})();

// The totals, the per-minute chart and today's top event types, narrowed by the page's filters:
// events and unique users today and this hour (/v1/series by day and by hour), the last 60
// minutes and the chart (/v1/series by minute, read from the raw events) and the top event
// types (/v1/breakdowns/event_type for today), each asked with every filter and refreshed every
// 15 s. Active users, the lag, the dead letters and the recent events are not narrowed: their
// cards say so. Without filters dashboard.js draws every one from the live document again.
(() => {
  "use strict";

  const REFRESH_MS = 15000;
  const NOT_NARROWED = "all events, not narrowed by the filters";
  const $ = (id) => document.getElementById(id);
  const filters = window.baFilters;
  const stale = window.baStale;
  let loading = 0;
  let loadedAt = 0;
  let busy = false;

  const notes = ["kpi-today-note", "kpi-users-note", "kpi-60-note", "chart-note", "top-note"];

  // A failure is said by the card's mark (window.baStale), not by its note.
  function note(id, answer, problem, failure) {
    if (problem) {
      filters.note($(id), failure ? "" : problem, true);
      $(id).dataset.source = "";
      return;
    }
    filters.note($(id), filters.source(answer.body));
    $(id).dataset.source = filters.origin(answer.body);
  }

  function unfiltered() {
    for (const id of notes) {
      filters.note($(id), "");
      delete $(id).dataset.source;
    }
    filters.note($("active-note"), "");
    usersPerDayOnly(false);
    $("recent-scope").textContent = "newest first";
    const live = window.baLive;
    const data = live && live.last;
    if (!data) return;
    live.setNumber("kpi-today", data.totals.today);
    live.setNumber("kpi-hour", data.totals.this_hour);
    live.setNumber("kpi-users-today", data.unique_users.today);
    live.setNumber("kpi-users-hour", data.unique_users.this_hour);
    live.setNumber("kpi-60", data.totals.last_60_minutes);
    live.setNumber("kpi-bots-60", data.bots ? data.bots.last_60_minutes : null);
    live.drawRate(data.minutes || []);
    live.drawChart(data.minutes || []);
    live.drawTopTypes(data.top_event_types || [], data.periods.day);
    live.redrawn();
  }

  // window.baStale.settle for several cards: true when every one keeps its figures.
  function kept(ids, failure) {
    return ids.map((id) => stale.settle($(id), failure, filters.key())).every(Boolean);
  }

  const points = (answer, problem) => (problem ? null : (answer.body.current || answer.body).points || []);
  const total = (found) => (found ? found.reduce((n, point) => n + point.total_events, 0) : null);

  async function load() {
    const mine = ++loading;
    if (!filters.list().length) {
      loadedAt = 0;
      unfiltered();
      return;
    }
    filters.note($("active-note"), NOT_NARROWED);
    $("recent-scope").textContent = "newest first · " + NOT_NARROWED;
    const live = window.baLive;
    const data = live && live.last;
    if (!data) return;
    busy = true;
    loadedAt = Date.now();
    try {
      await Promise.all([totals(data, mine), perMinute(data, mine), topTypes(data, mine)]);
    } finally {
      if (mine === loading) busy = false;
    }
  }

  async function totals(data, mine) {
    const day = data.periods.day;
    const hour = data.periods.hour;
    const [byDay, byHour] = await Promise.all([
      filters.ask("/v1/series", new URLSearchParams({ granularity: "day", from: day, to: day })),
      filters.ask("/v1/series", new URLSearchParams({ granularity: "hour", from: hour, to: hour })),
    ]);
    if (mine !== loading) return;
    const cards = ["kpi-today-card", "kpi-users-card"];
    if (kept(cards, byDay.failure || byHour.failure)) return;
    const live = window.baLive;
    const days = points(byDay.answer, byDay.problem);
    const hours = points(byHour.answer, byHour.problem);
    const users = (found) => {
      if (!found) return null;
      if (!found.length) return 0;
      return found[0].unique_users;
    };
    live.setNumber("kpi-today", total(days));
    live.setNumber("kpi-hour", total(hours));
    live.setNumber("kpi-users-today", users(days));
    live.setNumber("kpi-users-hour", users(hours));
    const failed = byDay.problem ? byDay : byHour;
    const shown = failed.problem ? failed : byDay;
    note("kpi-today-note", shown.answer, shown.problem, shown.failure);
    note("kpi-users-note", shown.answer, shown.problem, shown.failure);
    usersPerDayOnly(!failed.problem && hours && hours.length > 0 && hours[0].unique_users === null);
  }

  // The "–" of unique users this hour, filtered from the aggregates (they keep them per day
  // only): said beside it (#kpi-users-hour-why, read by screen readers too) and on hover.
  function usersPerDayOnly(shown) {
    $("kpi-users-hour-why").hidden = !shown;
    if (shown) $("kpi-users-hour").title = "unique users are kept per day only for a filter";
    else $("kpi-users-hour").removeAttribute("title");
  }

  async function perMinute(data, mine) {
    const minutes = data.minutes || [];
    if (!minutes.length) return;
    const from = minutes[0].period;
    const to = minutes[minutes.length - 1].period;
    const { answer, problem, failure } = await filters.ask("/v1/series", new URLSearchParams({ granularity: "minute", from, to }));
    if (mine !== loading) return;
    const cards = ["kpi-60-card", "chart-card"];
    if (kept(cards, failure)) return;
    const live = window.baLive;
    const found = points(answer, problem);
    if (!found) {
      live.setNumber("kpi-60", null);
      live.setNumber("kpi-bots-60", null);
      $("kpi-rate").textContent = "–";
      live.drawChart(minutes.map((minute) => ({ period: minute.period, total: 0, by_type: {} })));
      note("kpi-60-note", answer, problem, failure);
      note("chart-note", answer, problem, failure);
      return;
    }
    const byPeriod = new Map(found.map((point) => [point.period, point]));
    const narrowed = minutes.map((minute) => {
      const point = byPeriod.get(minute.period);
      return { period: minute.period, total: point ? point.total_events : 0, by_type: point ? point.events_by_type || {} : {} };
    });
    live.setNumber("kpi-60", total(found));
    const bots = found.some((point) => typeof point.bot_events === "number")
      ? found.reduce((n, point) => n + (point.bot_events || 0), 0)
      : null;
    live.setNumber("kpi-bots-60", bots);
    live.drawRate(narrowed);
    live.drawChart(narrowed);
    note("kpi-60-note", answer, "");
    note("chart-note", answer, "");
  }

  async function topTypes(data, mine) {
    const day = data.periods.day;
    const params = new URLSearchParams({ granularity: "day", from: day, to: day, limit: "10" });
    const { answer, problem, failure } = await filters.ask("/v1/breakdowns/event_type", params);
    if (mine !== loading) return;
    if (kept(["top-card"], failure)) return;
    const live = window.baLive;
    if (problem) {
      live.drawTopTypes([], day);
      note("top-note", answer, problem, failure);
      return;
    }
    const values = (answer.body.current || answer.body).values || answer.body.values || [];
    const types = values
      .filter((entry) => entry.events > 0)
      .map((entry) => ({ event_type: entry.value, count: entry.events }));
    live.drawTopTypes(types, day);
    note("top-note", answer, "");
  }

  // Every 15 s, the live document answered or not (its figures are not these).
  function refresh() {
    if (!filters.list().length || busy) return;
    if (!loadedAt || Date.now() - loadedAt >= REFRESH_MS) load();
  }

  filters.onChange(load);
  document.addEventListener("dashboard-live", refresh);
  // A new read key: nothing of the previous one's; asked again at its first live document.
  document.addEventListener("dashboard-key", () => {
    loading++;
    busy = false;
    loadedAt = 0;
    for (const id of notes) {
      filters.note($(id), "");
      delete $(id).dataset.source;
    }
    usersPerDayOnly(false);
  });
  document.addEventListener("dashboard-offline", refresh);
})();
