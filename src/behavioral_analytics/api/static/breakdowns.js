// The breakdown panels: pages, sources, campaigns, devices, browsers, systems and countries
// over the days the range picker names, from /v1/dashboard/breakdowns. With "compare", each
// value also shows its events in the range of the same length before. Clicking a value filters:
// its events and unique users per day over the range (/v1/series?filter=DIMENSION:VALUE, from
// the live breakdowns). Uses the read key the live part of the page keeps (it shows the key
// form when the key is refused).
(() => {
  "use strict";

  const POLL_MS = 15000;
  const KEY_STORAGE = "behavioral-analytics.read-key";
  const TITLES = {
    page: "Top pages",
    referrer: "Referrers",
    utm_source: "UTM source",
    utm_medium: "UTM medium",
    utm_campaign: "UTM campaign",
    device: "Devices",
    browser: "Browsers",
    os: "Operating systems",
    country: "Countries",
  };

  const $ = (id) => document.getElementById(id);
  const numberFormat = new Intl.NumberFormat("en-US");
  let timer = null;
  let filter = null; // {dimension, value} of the clicked value
  let shown = null; // the range last drawn: {from, to, compare}

  function query() {
    const params = new URLSearchParams();
    if ($("range-from").value) params.set("from", $("range-from").value);
    if ($("range-to").value) params.set("to", $("range-to").value);
    if ($("range-compare").checked) params.set("compare", "true");
    return params.toString();
  }

  function authorization() {
    const headers = {};
    const key = localStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  }

  async function load() {
    clearTimeout(timer);
    const headers = authorization();
    try {
      const response = await fetch("/v1/dashboard/breakdowns?" + query(), { headers, cache: "no-store" });
      if (response.ok) {
        render(await response.json());
        $("range-error").textContent = "";
      } else if (response.status === 400) {
        const body = await response.json();
        $("range-error").textContent = body.detail || "bad range";
      }
    } catch (error) {
      // The live part of the page reports the connection.
    }
    timer = setTimeout(load, POLL_MS);
  }

  function render(body) {
    const current = body.current || body;
    const previous = body.previous || null;
    if (!$("range-from").value) $("range-from").value = current.from;
    if (!$("range-to").value) $("range-to").value = current.to;
    $("range-shown").textContent = previous
      ? `${current.from} – ${current.to} vs ${previous.from} – ${previous.to} (${body.timezone})`
      : `${current.from} – ${current.to} (${body.timezone})`;
    const cards = body.dimensions
      .filter((dimension) => current.panels[dimension])
      .map((dimension) =>
        panel(dimension, current.panels[dimension], previous ? previous.panels[dimension] : null),
      );
    $("breakdowns").replaceChildren(...cards);
    $("breakdowns-section").hidden = cards.length === 0;
    shown = { from: current.from, to: current.to, compare: Boolean(previous) };
    if (filter) loadFiltered();
  }

  // -- a clicked value: its series over the range ---------------------------------------------

  async function loadFiltered() {
    if (!filter || !shown) return;
    const params = new URLSearchParams({
      granularity: "day",
      from: shown.from,
      to: shown.to,
      filter: `${filter.dimension}:${filter.value}`,
    });
    if (shown.compare) params.set("compare", "true");
    try {
      const response = await fetch("/v1/series?" + params, { headers: authorization(), cache: "no-store" });
      if (response.ok) drawFiltered(await response.json());
    } catch (error) {
      // The live part of the page reports the connection.
    }
  }

  function drawFiltered(body) {
    const current = body.current || body;
    const previous = body.previous || null;
    const sum = (points) => points.reduce((total, point) => total + point.total_events, 0);
    $("filter-name").textContent = `${TITLES[filter.dimension] || filter.dimension}: ${filter.value}`;
    const total = $("filter-total");
    total.dataset.value = String(sum(current.points));
    total.textContent = numberFormat.format(sum(current.points)) + " events";
    const before = $("filter-previous");
    before.hidden = !previous;
    before.dataset.value = previous ? String(sum(previous.points)) : "";
    before.textContent = previous ? `previous ${numberFormat.format(sum(previous.points))}` : "";
    const peak = Math.max(1, ...current.points.map((point) => point.total_events));
    const items = current.points.map((point) => {
      const li = document.createElement("li");
      li.dataset.period = point.period;
      li.dataset.events = String(point.total_events);
      li.dataset.users = point.unique_users === null ? "" : String(point.unique_users);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = point.period;
      const count = document.createElement("span");
      count.className = "count";
      const users = point.unique_users === null ? "" : ` · ${numberFormat.format(point.unique_users)} users`;
      count.textContent = numberFormat.format(point.total_events) + users + (point.exact ? "" : " · may be in (other)");
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = ((100 * point.total_events) / peak).toFixed(1) + "%";
      track.append(fill);
      li.append(name, count, track);
      return li;
    });
    $("filter-days").replaceChildren(...items);
    $("filter-card").hidden = false;
  }

  function setFilter(dimension, value) {
    filter = { dimension, value };
    for (const row of document.querySelectorAll(".breakdown li")) {
      row.classList.toggle("selected", row.closest(".breakdown").dataset.dimension === dimension && row.dataset.value === value);
    }
    loadFiltered();
  }

  $("filter-clear").addEventListener("click", () => {
    filter = null;
    $("filter-card").hidden = true;
    for (const row of document.querySelectorAll(".breakdown li.selected")) row.classList.remove("selected");
  });

  function panel(dimension, summary, before) {
    const card = document.createElement("article");
    card.className = "card breakdown";
    card.dataset.dimension = dimension;
    const header = document.createElement("header");
    const title = document.createElement("h2");
    title.textContent = TITLES[dimension] || dimension;
    const total = document.createElement("span");
    total.className = "muted total";
    total.dataset.value = String(summary.total_events);
    total.textContent = numberFormat.format(summary.total_events) + " events";
    header.append(title, total);
    const list = document.createElement("ol");
    list.className = "bars";
    const earlier = new Map((before ? before.values : []).map((row) => [row.value, row.events]));
    const peak = Math.max(1, ...summary.values.map((row) => row.events));
    for (const row of summary.values) {
      const li = item(row, peak, before ? earlier.get(row.value) || 0 : null);
      li.addEventListener("click", () => setFilter(dimension, row.value));
      li.classList.toggle("selected", Boolean(filter && filter.dimension === dimension && filter.value === row.value));
      list.append(li);
    }
    card.append(header, list);
    if (!summary.values.length) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "No events in this range.";
      card.append(empty);
    }
    const notes = [];
    if (summary.values_not_shown) notes.push(`${summary.values_not_shown} more values`);
    if (summary.unique_users_note) notes.push("users per day only");
    if (notes.length) {
      const note = document.createElement("p");
      note.className = "muted note";
      note.textContent = notes.join(" · ");
      if (summary.unique_users_note) note.title = summary.unique_users_note;
      card.append(note);
    }
    return card;
  }

  function item(row, peak, previousEvents) {
    const li = document.createElement("li");
    li.dataset.value = row.value;
    li.className = "pick";
    li.title = "show this value per day";
    li.dataset.events = String(row.events);
    li.dataset.users = row.unique_users === null ? "" : String(row.unique_users);
    if (previousEvents !== null) li.dataset.previous = String(previousEvents);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = row.value;
    name.title = row.value;
    const count = document.createElement("span");
    count.className = "count";
    const parts = [numberFormat.format(row.events), (100 * row.share).toFixed(1) + "%"];
    if (row.unique_users !== null) parts.push(numberFormat.format(row.unique_users) + " users");
    if (previousEvents !== null) parts.push(change(row.events, previousEvents));
    count.textContent = parts.join(" · ");
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill" + (row.value === "(other)" ? " other" : "");
    fill.style.display = "block";
    fill.style.width = ((100 * row.events) / peak).toFixed(1) + "%";
    track.append(fill);
    li.append(name, count, track);
    return li;
  }

  function change(now, before) {
    if (!before) return "new";
    const ratio = (now - before) / before;
    return (ratio >= 0 ? "+" : "−") + Math.abs(100 * ratio).toFixed(0) + "%";
  }

  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("range-compare").addEventListener("change", load);

  // Start once the live part has read its first document with the key it holds (so a missing
  // or refused key is asked for once, by it).
  let started = false;
  document.addEventListener("dashboard-live", () => {
    if (started) return;
    started = true;
    load();
  });
})();
