// The live dashboard: polls /v1/dashboard and draws it. No third-party code: the chart is SVG
// built here. The read key comes from #key= once (then kept in localStorage) or the key form.
(() => {
  "use strict";

  const POLL_MS = 1500;
  const STALL_S = 120; // no commit for this long is worth saying (api/ops.py COMMIT_STALL_S)
  const KEY_STORAGE = "behavioral-analytics.read-key";
  const SVG_NS = "http://www.w3.org/2000/svg";
  // The recipe's six types keep their colours; other types take the rest in order of appearance.
  const PALETTE = [
    "#4f9cf9", "#34d399", "#f59e0b", "#f472b6", "#a78bfa", "#22d3ee",
    "#ef4444", "#a3e635", "#fbbf24", "#2dd4bf", "#c084fc", "#f97316",
  ];
  const KNOWN = ["page_view", "button_click", "purchase", "search", "signup", "login"];
  const OTHER_COLOR = "#64748b";
  const CHART_SERIES = 6;
  // The cards the live document draws: the first ones only without filters (tiles.js draws
  // them narrowed), the others always.
  const NARROWED = ["kpi-today-card", "kpi-users-card", "kpi-60-card", "chart-card", "top-card", "sessions-card", "funnel-card"];
  const NOT_NARROWED = ["active-card", "lag-card", "dead-card", "recent-card"];
  // The tiles whose zeros count events: on a store no event was ever committed to they say so
  // ("No events yet.") beside them (the lag says "never"; dead letters may exist without a commit).
  const EVENT_TILES = ["kpi-today-card", "kpi-users-card", "active-card", "kpi-60-card", "sessions-card", "funnel-card"];

  const $ = (id) => document.getElementById(id);
  const stale = window.baStale;
  const { refreshed, failed, unmark, reasonOf, UNREACHABLE } = stale;
  const { noEvents, storeEmpty } = window.baEmpty;
  stale.setClock(clockTime);
  const numberFormat = new Intl.NumberFormat("en-US");
  const seenKeys = new Set();
  let timer = null;
  let firstRender = true;
  let lastAt = 0; // when the live document was last drawn (epoch seconds)
  let lastFailure = ""; // why the latest poll drew nothing, "" when it drew

  // -- the read key ---------------------------------------------------------------------------

  // From the fragment (`/#key=…`), which the browser never sends: a key in the query string
  // would be written to the request logs of every proxy on the way (Cloud Run's included).
  function takeKeyFromFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    if (!fragment.has("key")) return false;
    localStorage.setItem(KEY_STORAGE, fragment.get("key"));
    fragment.delete("key");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    return true;
  }
  takeKeyFromFragment();
  // A link to the open page with a new `#key=` does not reload it.
  window.addEventListener("hashchange", () => {
    const before = readKey();
    if (takeKeyFromFragment()) {
      if (readKey() !== before) forgetKey();
      $("key-form").hidden = true;
      poll();
    }
  });

  function readKey() {
    return localStorage.getItem(KEY_STORAGE);
  }

  function showKeyForm(message) {
    $("key-form").hidden = false;
    $("key-error").textContent = message || "";
    $("key-input").focus();
    setStatus("locked", "read key needed");
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (key !== readKey()) forgetKey();
    localStorage.setItem(KEY_STORAGE, key);
    $("key-input").value = "";
    $("key-form").hidden = true;
    poll();
  });

  $("change-key").addEventListener("click", () => {
    clearTimeout(timer);
    localStorage.removeItem(KEY_STORAGE);
    forgetKey();
    showKeyForm("");
  });

  // A key changed or refused: nothing the previous key showed stays on the page, and an answer
  // still on its way for it is dropped. The other scripts empty their own panels on
  // "dashboard-key".
  function forgetKey() {
    stale.newKey();
    live.last = null;
    lastAt = 0;
    lastFailure = "";
    firstRender = true;
    seenKeys.clear();
    for (const element of document.querySelectorAll(".kpi [data-value], #sessions-card [data-value]")) {
      element.dataset.value = "";
      element.textContent = "–";
    }
    for (const id of ["kpi-rate", "kpi-commit"]) $(id).textContent = "–";
    $("kpi-waiting").textContent = "";
    for (const id of ["as-of", "chart-range", "top-period", "sessions-state", "funnel-name"]) $(id).textContent = "";
    for (const id of ["chart", "legend", "chart-values", "top-types", "funnel-steps", "recent-events"]) $(id).replaceChildren();
    $("chart").setAttribute("aria-label", CHART_LABEL);
    chartValues = "";
    $("lag-card").classList.remove("warn");
    $("dead-card").classList.remove("bad");
    $("recent-empty").hidden = true;
    $("change-key").hidden = true;
    for (const element of document.querySelectorAll("[data-stale]")) unmark(element);
    for (const element of document.querySelectorAll("[data-empty]")) noEvents(element, false);
    document.dispatchEvent(new CustomEvent("dashboard-key"));
  }

  // -- polling --------------------------------------------------------------------------------

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    clearTimeout(timer);
    const asked = stale.generation();
    const headers = {};
    const key = readKey();
    if (key) headers.Authorization = "Bearer " + key;
    let response = null;
    let body = null;
    try {
      response = await fetch("/v1/dashboard", { headers, cache: "no-store" });
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (asked !== stale.generation()) return; // for a key no longer held: its successor polls
    if (response && response.status === 401) {
      // A refused key is not kept (a write key typed here stayed in the browser's storage).
      localStorage.removeItem(KEY_STORAGE);
      forgetKey();
      showKeyForm(key ? "That key was refused." : "");
      return; // resumes when a key is entered
    }
    schedule();
    if (response && response.ok && body) {
      render(body);
      $("change-key").hidden = !key;
    } else {
      notRefreshed(response && !response.ok ? reasonOf(response.status, body) : UNREACHABLE);
    }
  }

  function notRefreshed(reason) {
    lastFailure = reason;
    setStatus("offline", "offline · retrying");
    const filtered = window.baFilters && window.baFilters.list().length > 0;
    for (const id of filtered ? NOT_NARROWED : [...NOT_NARROWED, ...NARROWED]) failed($(id), reason);
    document.dispatchEvent(new CustomEvent("dashboard-offline", { detail: reason }));
  }

  // Only a change: the pill is a live region, and a screen reader reads every change aloud.
  function setStatus(state, text) {
    $("status").dataset.state = state;
    if ($("status-text").textContent !== text) $("status-text").textContent = text;
  }

  // -- rendering ------------------------------------------------------------------------------

  const CHART_LABEL = "Events per minute, last 60 minutes";
  let chartValues = ""; // what #chart-values shows
  const colors = new Map();
  let unknownTypes = 0;
  function colorOf(type) {
    if (!colors.has(type)) {
      const known = KNOWN.indexOf(type);
      const free = PALETTE.length - KNOWN.length;
      const index = known >= 0 ? known : KNOWN.length + (unknownTypes++ % free);
      colors.set(type, PALETTE[index]);
    }
    return colors.get(type);
  }

  function setNumber(id, value, format) {
    const element = $(id);
    element.dataset.value = value === null || value === undefined ? "" : String(value);
    element.textContent =
      value === null || value === undefined ? "–" : format ? format(value) : numberFormat.format(value);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return Math.round(seconds / 60) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function render(data) {
    const fresh = data.freshness || {};
    const sinceCommit = fresh.since_last_commit_s;
    // Messages waiting while nothing commits: no worker is taking them (a quiet store waits for
    // none). The backlog is null where the broker cannot tell.
    const waiting = data.backlog || 0;
    const waits = waiting ? ` while ${numberFormat.format(waiting)} messages wait` : "";
    const committed = fresh.last_commit_at !== null && fresh.last_commit_at !== undefined;
    const stalled = waiting > 0 && (!committed || sinceCommit > STALL_S);
    if (!committed) setStatus("stale", "no commit yet" + waits);
    else if (sinceCommit !== null && sinceCommit > STALL_S) setStatus("stale", `no commit for ${duration(sinceCommit)}${waits}`);
    else setStatus("live", "live");
    setZone(data.timezone);
    $("as-of").textContent = `updated ${clockTime(data.as_of)} ${zoneName}`;
    $("tz").textContent = data.timezone;
    $("recent-tz").textContent = zoneName;

    // With filters on, the event and user totals, the per-minute chart and today's top event
    // types are drawn narrowed, by tiles.js; the rest of this document is drawn as it is.
    const filtered = window.baFilters && window.baFilters.list().length > 0;
    const minutes = data.minutes || [];
    const empty = storeEmpty(data);
    noEvents($("chart-card"), empty, true);
    noEvents($("top-card"), empty);
    noEvents($("recent-card"), empty, true);
    for (const id of EVENT_TILES) noEvents($(id), empty);
    if (!filtered) {
      setNumber("kpi-today", data.totals.today);
      setNumber("kpi-hour", data.totals.this_hour);
      setNumber("kpi-users-today", data.unique_users.today);
      setNumber("kpi-users-hour", data.unique_users.this_hour);
      setNumber("kpi-60", data.totals.last_60_minutes);
      drawRate(minutes);
    }
    setNumber("kpi-active-5", data.active_users.last_5_minutes);
    setNumber("kpi-active-30", data.active_users.last_30_minutes);
    setNumber("kpi-lag", fresh.lag_s, duration);
    $("kpi-commit").textContent = sinceCommit === null || sinceCommit === undefined ? "never" : duration(sinceCommit) + " ago";
    $("kpi-waiting").textContent = waiting ? ` · ${numberFormat.format(waiting)} waiting` : "";
    $("lag-card").classList.toggle("warn", fresh.lag_s > 10 || stalled);
    setNumber("kpi-dead-letters", data.dead_letters);
    $("dead-card").classList.toggle("bad", data.dead_letters > 0);

    // With filters on, the sessions and funnel tiles are drawn narrowed, by tiles.js.
    live.last = data;
    if (!filtered) {
      setNumber("kpi-bots-60", data.bots ? data.bots.last_60_minutes : null);
      drawSessions(data.sessions);
      drawFunnel(data.funnel);
      drawChart(minutes);
      drawTopTypes(data.top_event_types || [], data.periods.day);
    }
    drawRecent(data.recent_events || [], empty);
    lastAt = Date.now() / 1000;
    lastFailure = "";
    for (const id of NOT_NARROWED) refreshed($(id));
    if (!filtered) for (const id of NARROWED) refreshed($(id));
    firstRender = false;
    document.dispatchEvent(new CustomEvent("dashboard-live"));
  }

  // Events per minute now: the busier of the current and the previous minute.
  function drawRate(minutes) {
    const current = minutes.length ? minutes[minutes.length - 1].total : 0;
    const previous = minutes.length > 1 ? minutes[minutes.length - 2].total : 0;
    $("kpi-rate").textContent = numberFormat.format(Math.max(current, previous));
  }

  // Stacked columns, one per minute; the busiest types get colours, the rest share "other". Each
  // column's values, shown on hover, are also in the table under the chart (#chart-values).
  function drawChart(minutes) {
    const totals = new Map();
    for (const minute of minutes) {
      for (const [type, count] of Object.entries(minute.by_type)) {
        totals.set(type, (totals.get(type) || 0) + count);
      }
    }
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const series = ranked.slice(0, CHART_SERIES).map(([type]) => type);
    const hasOther = ranked.length > CHART_SERIES;

    const width = Math.max(320, $("chart").clientWidth || 960);
    const height = 260, left = 44, right = 8, top = 10, bottom = 24;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const peak = Math.max(1, ...minutes.map((minute) => minute.total));
    const step = niceStep(peak / 4);
    const yMax = Math.ceil(peak / step) * step;
    const y = (value) => top + plotHeight - (value / yMax) * plotHeight;

    const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}` });
    for (let tick = 0; tick <= yMax; tick += step) {
      svg.append(svgElement("line", { class: "grid-line", x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
      const label = svgElement("text", { class: "axis", x: left - 8, y: y(tick) + 4, "text-anchor": "end" });
      label.textContent = compact(tick);
      svg.append(label);
    }
    const slot = plotWidth / Math.max(1, minutes.length);
    const barWidth = Math.max(1, slot * 0.72);
    const values = [];
    minutes.forEach((minute, index) => {
      const x = left + index * slot + (slot - barWidth) / 2;
      const column = svgElement("g", { class: "column" });
      let base = 0;
      const parts = series.map((type) => [type, minute.by_type[type] || 0]);
      if (hasOther) {
        const named = parts.reduce((sum, [, count]) => sum + count, 0);
        parts.push(["other", minute.total - named]);
      }
      for (const [type, count] of parts) {
        if (count <= 0) continue;
        const rect = svgElement("rect", {
          x, width: barWidth, y: y(base + count), height: Math.max(0.5, y(base) - y(base + count)),
          fill: type === "other" ? OTHER_COLOR : colorOf(type), rx: 1.5,
        });
        column.append(rect);
        base += count;
      }
      const title = svgElement("title", {});
      const lines = parts.filter(([, count]) => count > 0).map(([type, count]) => `${type}: ${count}`);
      title.textContent = `${hhmm(minute.period)} · ${minute.total} events` + (lines.length ? "\n" + lines.join("\n") : "");
      values.push([hhmm(minute.period), numberFormat.format(minute.total), lines.join(", ")]);
      column.append(svgElement("rect", { x: left + index * slot, width: slot, y: top, height: plotHeight, fill: "transparent" }));
      column.append(title);
      svg.append(column);
      if (index % 10 === 0 || index === minutes.length - 1) {
        const label = svgElement("text", { class: "axis", x: x + barWidth / 2, y: height - 6, "text-anchor": "middle" });
        label.textContent = hhmm(minute.period);
        svg.append(label);
      }
    });
    $("chart").replaceChildren(svg);
    if (minutes.length) {
      const range = `${hhmm(minutes[0].period)}–${hhmm(minutes[minutes.length - 1].period)}`;
      $("chart-range").textContent = range;
      const sum = minutes.reduce((n, minute) => n + minute.total, 0);
      const busiest = minutes.reduce((a, b) => (b.total > a.total ? b : a));
      $("chart").setAttribute(
        "aria-label",
        `Events per minute, ${range}: ${numberFormat.format(sum)} in all, at most ${numberFormat.format(busiest.total)}` +
          ` (${hhmm(busiest.period)}); every minute's values are in the table below`,
      );
    } else {
      $("chart").setAttribute("aria-label", CHART_LABEL);
    }
    drawValues(values);

    const legend = series.map((type) => legendItem(type, colorOf(type)));
    if (hasOther) legend.push(legendItem("other", OTHER_COLOR));
    $("legend").replaceChildren(...legend);
  }

  // Redrawn only when a value changed, so that a screen reader reading the table keeps its place.
  function drawValues(values) {
    const text = JSON.stringify(values);
    if (text === chartValues) return;
    chartValues = text;
    const rows = values.map(([minute, total, types]) => {
      const row = document.createElement("tr");
      row.append(cell(minute), cell(total), cell(types, "details"));
      return row;
    });
    $("chart-values").replaceChildren(...rows);
  }

  function legendItem(name, color) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color;
    item.append(swatch, document.createTextNode(name));
    return item;
  }

  function percent(value) {
    return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%";
  }

  // What the filtered tiles need of the live part: its last document and its drawing.
  const live = {
    last: null, drawSessions, drawFunnel, drawChart, drawTopTypes, drawRate, setNumber, redrawn,
  };
  window.baLive = live;

  // The narrowed cards drawn again from the last live document (the filters are off): as fresh
  // as it is, and marked again if the latest poll failed.
  function redrawn() {
    for (const id of NARROWED) {
      refreshed($(id), "", lastAt);
      failed($(id), lastFailure);
    }
  }

  function drawSessions(sessions) {
    const card = $("sessions-card");
    card.hidden = sessions === undefined;
    const s = sessions || {};
    setNumber("sessions-count", s.sessions);
    setNumber("sessions-duration", s.avg_duration_s, duration);
    setNumber("sessions-bounce", s.bounce_rate, percent);
    setNumber("sessions-events", s.events_per_session, (v) => v.toFixed(2));
    $("sessions-state").textContent = sessions ? (sessions.final ? "final" : "provisional") : "";
  }

  // One bar per step: users whose furthest step today is at least this one.
  function drawFunnel(funnel) {
    $("funnel-card").hidden = !funnel;
    if (!funnel) return;
    $("funnel-name").textContent = funnel.name;
    const peak = Math.max(1, funnel.users[0] || 0);
    const items = funnel.steps.map((step, i) => {
      const item = document.createElement("li");
      item.dataset.users = String(funnel.users[i]);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = i + 1 + ". " + step;
      const count = document.createElement("span");
      count.className = "count";
      const conversion = i ? " · " + percent(funnel.conversion[i - 1]) : "";
      count.textContent = numberFormat.format(funnel.users[i]) + conversion;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = ((100 * funnel.users[i]) / peak).toFixed(1) + "%";
      fill.style.background = colorOf(step);
      track.append(fill);
      item.append(name, count, track);
      return item;
    });
    $("funnel-steps").replaceChildren(...items);
  }

  function drawTopTypes(types, day) {
    $("top-period").textContent = day;
    const peak = Math.max(1, ...types.map((entry) => entry.count));
    const items = types.map((entry) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = entry.event_type;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = numberFormat.format(entry.count);
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = ((100 * entry.count) / peak).toFixed(1) + "%";
      fill.style.background = colorOf(entry.event_type);
      track.append(fill);
      item.append(name, count, track);
      return item;
    });
    $("top-types").replaceChildren(...items);
  }

  function drawRecent(events, empty) {
    $("recent-empty").hidden = events.length > 0 || empty;
    const rows = events.map((event) => {
      const row = document.createElement("tr");
      row.dataset.key = event.key;
      if (!seenKeys.has(event.key) && !firstRender) row.className = "new";
      seenKeys.add(event.key);
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.background = colorOf(event.event_type);
      chip.textContent = event.event_type;
      row.append(
        cell(clockTime(event.timestamp)),
        cell(chip),
        cell(event.who),
        cell(details(event.properties), "details"),
      );
      return row;
    });
    $("recent-events").replaceChildren(...rows);
    if (seenKeys.size > 5000) seenKeys.clear();
  }

  function details(properties) {
    const parts = [];
    if (properties.amount !== undefined) parts.push(`${properties.amount} ${properties.currency || ""}`.trim());
    if (properties.query !== undefined) parts.push(`“${properties.query}”`);
    for (const name of ["page_url", "url", "name", "device_type", "referrer"]) {
      if (properties[name] !== undefined && parts.length < 3) parts.push(String(properties[name]));
    }
    return parts.join(" · ");
  }

  // -- helpers --------------------------------------------------------------------------------

  // Every time on the page is in the reporting time zone (the one the chart's minutes, the
  // day and the periods are in), 24-hour, never the browser's own zone.
  let zoneName = "UTC";
  let timeFormat = null;

  function setZone(zone) {
    if (zone === zoneName && timeFormat) return;
    const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
    try {
      timeFormat = new Intl.DateTimeFormat("en-GB", { ...options, timeZone: zone });
      zoneName = zone;
    } catch (error) {
      timeFormat = new Intl.DateTimeFormat("en-GB", { ...options, timeZone: "UTC" });
      zoneName = "UTC";
    }
  }

  function clockTime(epochSeconds) {
    if (!timeFormat) setZone("UTC");
    return timeFormat.format(new Date(epochSeconds * 1000));
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (typeof content === "string") td.textContent = content;
    else td.append(content);
    return td;
  }

  function svgElement(name, attributes) {
    const element = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  }

  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
    for (const factor of [1, 2, 2.5, 5, 10]) {
      if (factor * power >= raw) return Math.max(1, factor * power);
    }
    return 10 * power;
  }

  function compact(value) {
    if (value >= 1e6) return (value / 1e6).toFixed(value % 1e6 ? 1 : 0) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(value % 1e3 ? 1 : 0) + "k";
    return String(value);
  }

  function hhmm(label) {
    // Minute labels are YYYY-MM-DD-HH-MM in the reporting time zone.
    const parts = label.split("-");
    return parts.length >= 5 ? `${parts[3]}:${parts[4]}` : label;
  }

  poll();
})();
