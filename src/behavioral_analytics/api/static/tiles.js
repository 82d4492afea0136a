// The tiles the page's filters narrow besides the panels: the filtered events per day over the
// picker's range (/v1/series), and today's sessions (/v1/sessions) and first funnel
// (/v1/funnels/NAME), each asked with every filter. A tile answered from the raw events says so
// ("from raw events (N scanned)"); a refused filter is the tile's message, its numbers blank.
// Without filters the sessions and funnel tiles are the live document's again.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const filters = window.baFilters;
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

  async function ask(path, params) {
    try {
      const answer = await filters.get(path, params, true);
      return { answer, problem: filters.problem(answer) };
    } catch (error) {
      return { answer: null, problem: "the server could not be reached" };
    }
  }

  // -- events per day over the range ----------------------------------------------------------

  async function series(mine) {
    const range = filters.range;
    if (!range) return;
    const params = new URLSearchParams({ granularity: "day", from: range.from, to: range.to });
    if (range.compare) params.set("compare", "true");
    const { answer, problem } = await ask("/v1/series", params);
    if (mine !== loading) return;
    $("filter-card").hidden = false;
    const total = $("filter-total");
    const before = $("filter-previous");
    if (problem) {
      total.dataset.value = "";
      total.textContent = "–";
      before.hidden = true;
      before.dataset.value = "";
      $("filter-days").replaceChildren();
      filters.note($("filter-note"), problem, true);
      return;
    }
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
    const { answer, problem } = await ask("/v1/sessions", params);
    if (mine !== loading) return;
    if (problem) {
      window.baLive.drawSessions(null);
      filters.note($("sessions-note"), problem, true);
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
    const { answer, problem } = await ask("/v1/funnels/" + encodeURIComponent(live.funnel.name), params);
    if (mine !== loading) return;
    const steps = live.funnel.steps;
    if (problem) {
      window.baLive.drawFunnel({ name: live.funnel.name, steps, users: steps.map(() => 0), conversion: [] });
      for (const li of document.querySelectorAll("#funnel-steps li")) {
        li.dataset.users = "";
        li.querySelector(".count").textContent = "–";
      }
      filters.note($("funnel-note"), problem, true);
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
})();
