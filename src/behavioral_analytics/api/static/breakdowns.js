// The breakdown panels: pages, entry and exit pages, sources, campaigns, devices, browsers,
// systems and countries over the days the range picker names. Unfiltered, the event panels come
// from one document, /v1/dashboard/breakdowns; with filters on (filters.js), each panel asks
// /v1/breakdowns/DIMENSION with every filter and shows what that answer says (a raw scan's
// note, or the refusal as its message; a failed refresh keeps the values, marked by
// window.baStale). Entry and exit pages count sessions, from the same
// route's points (`sessions` per value). With "compare", each value also shows its count in the
// range of the same length before. Clicking a value adds it to the page's filters (not an entry
// or exit page: a session's entry page is its first event's `page`, the filter to use).
(() => {
  "use strict";

  const POLL_MS = 15000;
  // Filtered answers are mostly raw scans: refreshed less often.
  const FILTERED_POLL_MS = 60000;
  const PANEL_VALUES = 10;
  const SESSION_PANELS = ["entry_page", "exit_page"];
  const OTHER = "(other)";
  // The label of each `unique_users_note` the API sends (breakdown_report.py: a multi-day or
  // hourly answer from the aggregates; raw_queries.py: a filtered answer, read from the raw
  // events, whose unique users are over the whole range). Each label is shown with why, in
  // short (visible, so read by screen readers too); the note is also the label's tooltip; a
  // note not listed here is shown as it is.
  const USERS_NOTES = {
    "unique users are kept per day: a person active on several days of the range is one person over the range, so the days' counts cannot be summed (see the points)":
      "users per day only (not shown for several days: one person active on two days would count twice)",
    "unique users per value are kept per day only": "users per day only (hours keep none per value)",
    "counted from the raw events: every value exactly, no admission and no (other)":
      "users over the whole range (each person once)",
  };
  const TITLES = {
    page: "Top pages",
    entry_page: "Entry pages",
    exit_page: "Exit pages",
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
  const filters = window.baFilters;
  const stale = window.baStale;
  const numberFormat = new Intl.NumberFormat("en-US");
  let timer = null;
  let loading = 0; // the newest load; an older one that resolves late draws nothing
  let storeEmpty = false; // the range's document says no event was ever committed

  function rangeParams() {
    const params = new URLSearchParams();
    if ($("range-from").value) params.set("from", $("range-from").value);
    if ($("range-to").value) params.set("to", $("range-to").value);
    if ($("range-compare").checked) params.set("compare", "true");
    return params;
  }

  async function load() {
    clearTimeout(timer);
    const mine = ++loading;
    let failure = "";
    try {
      const answer = await filters.get("/v1/dashboard/breakdowns", rangeParams(), false);
      if (answer.ok) {
        $("range-error").textContent = "";
        await render(answer.body, mine);
      } else if (answer.status === 400) {
        $("range-error").textContent = (answer.body && answer.body.detail) || "bad range";
      } else {
        failure = stale.reasonOf(answer.status, answer.body);
      }
    } catch (error) {
      failure = stale.UNREACHABLE;
    }
    if (mine !== loading) return;
    if (failure) notRefreshed(failure);
    timer = setTimeout(load, filters.list().length ? FILTERED_POLL_MS : POLL_MS);
  }

  // The range's document failed: every panel keeps what it shows if it is of the filters and
  // range asked, else is emptied; the tiles of the range (retention, the filtered days) too.
  function notRefreshed(reason) {
    const last = filters.range || {};
    const asked = {
      from: $("range-from").value || last.from,
      to: $("range-to").value || last.to,
      compare: $("range-compare").checked,
    };
    const cards = [...$("breakdowns").children];
    for (const element of cards) {
      if (!stale.failed(element, reason, filters.key(asked))) empty(element);
    }
    if (!cards.length) {
      $("breakdowns-section").hidden = false;
      stale.failed($("breakdowns"), reason);
    }
    document.dispatchEvent(new CustomEvent("dashboard-range-failed", { detail: reason }));
  }

  // Empties a card whose figures no longer stand; whether the store is empty is unknown then.
  function empty(element) {
    delete element.dataset.empty;
    for (const child of [...element.children]) {
      if (child.tagName !== "HEADER" && !child.classList.contains("stale-note")) child.remove();
    }
    for (const total of element.querySelectorAll("header .total")) total.remove();
  }

  async function render(body, mine) {
    const current = body.current || body;
    const previous = body.previous || null;
    if (!$("range-from").value) $("range-from").value = current.from;
    if (!$("range-to").value) $("range-to").value = current.to;
    const range = { from: current.from, to: current.to, compare: Boolean(previous) };
    storeEmpty = window.baEmpty.storeEmpty(body);
    const dimensions = body.dimensions.filter((d) => !SESSION_PANELS.includes(d));
    if (!dimensions.length) {
      $("breakdowns-section").hidden = true;
      return;
    }
    const order = dimensions.includes("page")
      ? [...dimensions.slice(0, dimensions.indexOf("page") + 1), ...SESSION_PANELS, ...dimensions.slice(dimensions.indexOf("page") + 1)]
      : [...SESSION_PANELS, ...dimensions];
    const filtered = filters.list().length > 0;
    const answers = await Promise.all(
      order.map((dimension) => {
        if (SESSION_PANELS.includes(dimension)) return ask(dimension, range, true);
        if (filtered) return ask(dimension, range, false);
        return {
          current: current.panels[dimension],
          previous: previous ? previous.panels[dimension] : null,
          note: "",
          problem: "",
        };
      }),
    );
    if (mine !== loading) return;
    $("range-shown").textContent = previous
      ? `${current.from} – ${current.to} vs ${previous.from} – ${previous.to} (${body.timezone})`
      : `${current.from} – ${current.to} (${body.timezone})`;
    // A panel whose own request failed keeps its card if that shows the same filters and range.
    const key = filters.key(range);
    const shown = new Map([...$("breakdowns").children].map((element) => [element.dataset.dimension, element]));
    const cards = order.map((dimension, i) => {
      const answer = answers[i];
      const old = shown.get(dimension);
      if (answer.failure && old && stale.failed(old, answer.failure, key)) return old;
      const element = SESSION_PANELS.includes(dimension) ? sessionPanel(dimension, answer) : panel(dimension, answer);
      stale.settle(element, answer.failure, key);
      return element;
    });
    const focused = document.activeElement && document.activeElement.closest("#breakdowns li.pick");
    $("breakdowns").replaceChildren(...cards);
    stale.refreshed($("breakdowns"));
    // A keyboard user's place survives the refresh.
    if (focused) {
      const dimension = CSS.escape(focused.closest(".breakdown").dataset.dimension);
      const again = $("breakdowns").querySelector(
        `.breakdown[data-dimension="${dimension}"] li.pick[data-value="${CSS.escape(focused.dataset.value)}"] .name`,
      );
      if (again) again.focus();
    }
    $("breakdowns-section").hidden = false;
    filters.range = range;
    document.dispatchEvent(new CustomEvent("dashboard-range", { detail: range }));
  }

  // One panel's own request: {current, previous, note, problem}.
  async function ask(dimension, range, sessions) {
    const params = new URLSearchParams({ granularity: "day", from: range.from, to: range.to, limit: String(PANEL_VALUES) });
    if (range.compare) params.set("compare", "true");
    const { answer, problem, failure } = await filters.ask("/v1/breakdowns/" + encodeURIComponent(dimension), params);
    if (problem) return { problem, failure };
    const body = answer.body;
    const read = sessions ? sessionSummary : (part) => part;
    return {
      current: read(body.current || body),
      previous: body.previous ? read(body.previous) : null,
      note: filters.source(body),
      origin: filters.origin(body),
      problem: "",
    };
  }

  // Sessions per value over a range, from the points' `sessions` (or the rows' where an answer
  // has no points); null where the answer holds no session counts.
  function sessionSummary(part) {
    const counts = new Map();
    let found = false;
    for (const point of part.points || []) {
      if (!point.sessions) continue;
      found = true;
      for (const [value, n] of Object.entries(point.sessions)) counts.set(value, (counts.get(value) || 0) + n);
    }
    if (!part.points) {
      for (const row of part.values || []) {
        if (typeof row.sessions !== "number") continue;
        found = true;
        counts.set(row.value, (counts.get(row.value) || 0) + row.sessions);
      }
    }
    if (!found && (part.points || part.values || []).length) return null;
    const other = counts.get(OTHER) || 0;
    counts.delete(OTHER);
    // A raw answer lists only its top values: its `total_sessions` counts them all.
    const summed = [...counts.values()].reduce((a, b) => a + b, 0) + other;
    const total = typeof part.total_sessions === "number" ? part.total_sessions : summed;
    const ranked = [...counts.entries()].filter(([, n]) => n).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const shown = ranked.slice(0, PANEL_VALUES).concat(other ? [[OTHER, other]] : []);
    return {
      total,
      values: shown.map(([value, n]) => ({ value, count: n, share: total ? n / total : 0 })),
      values_not_shown: Math.max(0, ranked.length - PANEL_VALUES),
    };
  }

  function card(dimension, answer) {
    const element = document.createElement("article");
    element.className = "card breakdown";
    element.dataset.dimension = dimension;
    if (answer.origin) element.dataset.answeredFrom = answer.origin;
    const header = document.createElement("header");
    const title = document.createElement("h2");
    title.textContent = TITLES[dimension] || filters.title(dimension);
    header.append(title);
    element.append(header);
    return element;
  }

  function message(element, text, className) {
    const p = document.createElement("p");
    p.className = className;
    p.textContent = text;
    element.append(p);
    return p;
  }

  function sessionPanel(dimension, answer) {
    const element = card(dimension, answer);
    element.classList.add("sessions-panel");
    if (answer.failure) return element; // marked by the caller
    if (answer.problem || !answer.current) {
      const why = answer.problem || "this store keeps no sessions per value";
      const text = why === filters.REFUSED ? why : `Not available: ${why}`;
      message(element, text, problemClass(why)).dataset.problem = why;
      return element;
    }
    const summary = answer.current;
    addTotal(element, summary.total, "sessions");
    const rows = summary.values.map((row) => ({ value: row.value, count: row.count, share: row.share, unique_users: null }));
    // Not a filter: sessions by entry page are sessions by their first event's `page`.
    list(element, null, rows, earlierCounts(answer.previous, "count"), "sessions");
    if (!rows.length && storeEmpty) return noEvents(element);
    if (!rows.length) message(element, "No sessions in this range.", "empty");
    notes(element, answer.note, summary.values_not_shown, null);
    return element;
  }

  function panel(dimension, answer) {
    const element = card(dimension, answer);
    if (answer.failure) return element; // marked by the caller
    if (answer.problem || !answer.current) {
      const why = answer.problem || "no breakdown of this dimension";
      message(element, why, problemClass(why)).dataset.problem = why;
      return element;
    }
    const summary = answer.current;
    addTotal(element, summary.total_events, "events");
    const rows = summary.values.map((row) => ({ ...row, count: row.events }));
    list(element, dimension, rows, earlierCounts(answer.previous, "events"), "events");
    if (!rows.length && storeEmpty) return noEvents(element);
    if (!rows.length) message(element, "No events in this range.", "empty");
    notes(element, answer.note, summary.values_not_shown, summary.unique_users_note);
    return element;
  }

  function noEvents(element) {
    window.baEmpty.noEvents(element, true);
    return element;
  }

  // A refusal of the filters is shown once, in the filter bar: a panel only says so.
  function problemClass(why) {
    return why === filters.REFUSED ? "unavailable refused" : "unavailable error";
  }

  // Each value's count in the range before, from that range's listed values (its top ones):
  // a value it did not list had none there when it listed every value, else at most the
  // smallest count it listed ({atMost}); null without a comparison.
  function earlierCounts(previous, key) {
    if (!previous) return null;
    const listed = previous.values || [];
    const counts = new Map(listed.map((row) => [row.value, row[key]]));
    const ranked = listed.filter((row) => row.value !== OTHER).map((row) => row[key]);
    const complete = !previous.values_not_shown;
    const floor = ranked.length ? Math.min(...ranked) : 0;
    return (value) => (counts.has(value) ? counts.get(value) : complete ? 0 : { atMost: floor });
  }

  function addTotal(element, total, unit) {
    const span = document.createElement("span");
    span.className = "muted total";
    span.dataset.value = String(total);
    span.textContent = `${numberFormat.format(total)} ${total === 1 ? unit.slice(0, -1) : unit}`;
    element.querySelector("header").append(span);
  }

  function list(element, dimension, rows, earlier, unit) {
    const ol = document.createElement("ol");
    ol.className = "bars";
    const peak = Math.max(1, ...rows.map((row) => row.count));
    const chosen = filters.list();
    for (const row of rows) {
      const li = item(row, peak, earlier ? earlier(row.value) : null, unit);
      // `(other)` is no value: the raw events a filter is counted from have none.
      if (dimension && row.value !== OTHER) {
        const selected = chosen.some((f) => f.dimension === dimension && f.value === row.value);
        li.classList.add("pick");
        li.title = "filter the page by this value";
        li.addEventListener("click", () => filters.add(dimension, row.value));
        li.classList.toggle("selected", selected);
        // The value's name is the row's control for the keyboard.
        const name = li.querySelector(".name");
        name.tabIndex = 0;
        name.setAttribute("role", "button");
        name.setAttribute("aria-pressed", String(selected));
        name.addEventListener("keydown", (event) => {
          if (event.key !== "Enter" && event.key !== " ") return;
          event.preventDefault();
          filters.add(dimension, row.value);
        });
      }
      ol.append(li);
    }
    element.append(ol);
  }

  function notes(element, source, notShown, usersNote) {
    const parts = [];
    if (notShown) parts.push(`${notShown} more values`);
    if (usersNote) parts.push(USERS_NOTES[usersNote] || usersNote);
    if (source) parts.push(source);
    if (!parts.length) return;
    const note = message(element, parts.join(" · "), "muted note");
    if (usersNote) note.title = usersNote;
    if (source) note.dataset.source = "raw_events";
  }

  function item(row, peak, previous, unit) {
    const li = document.createElement("li");
    li.dataset.value = row.value;
    li.dataset[unit] = String(row.count);
    li.dataset.users = row.unique_users === null || row.unique_users === undefined ? "" : String(row.unique_users);
    if (previous !== null) li.dataset.previous = typeof previous === "number" ? String(previous) : `<=${previous.atMost}`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = row.value;
    name.title = row.value;
    const count = document.createElement("span");
    count.className = "count";
    const parts = [numberFormat.format(row.count), (100 * row.share).toFixed(1) + "%"];
    if (li.dataset.users) parts.push(numberFormat.format(row.unique_users) + " users");
    if (previous !== null) parts.push(change(row.count, previous));
    count.textContent = parts.join(" · ");
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill" + (row.value === OTHER ? " other" : "");
    fill.style.display = "block";
    fill.style.width = ((100 * row.count) / peak).toFixed(1) + "%";
    track.append(fill);
    li.append(name, count, track);
    return li;
  }

  function change(now, before) {
    if (typeof before === "object") return `before: ≤ ${numberFormat.format(before.atMost)}`;
    if (!before) return "new";
    const ratio = (now - before) / before;
    return (ratio >= 0 ? "+" : "−") + Math.abs(100 * ratio).toFixed(0) + "%";
  }

  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  $("range-compare").addEventListener("change", load);
  $("filter-clear").addEventListener("click", () => filters.clear());
  filters.onChange(load);

  // Start once the live part has read its first document with the key it holds (so a missing
  // or refused key is asked for once, by it).
  let started = false;
  document.addEventListener("dashboard-live", () => {
    // The first events committed: the panels say so now rather than at their next refresh.
    const arrived = storeEmpty && !window.baEmpty.storeEmpty(window.baLive.last);
    if (started && !arrived) return;
    started = true;
    storeEmpty = false;
    load();
  });

  // A new read key: nothing of the previous one's, and nothing asked until it is accepted.
  document.addEventListener("dashboard-key", () => {
    clearTimeout(timer);
    loading++;
    started = false;
    storeEmpty = false;
    $("breakdowns").replaceChildren();
    $("breakdowns-section").hidden = true;
    $("range-shown").textContent = "";
    $("range-error").textContent = "";
  });
})();
