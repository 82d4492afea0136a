// The page's filters: breakdown values (DIMENSION:VALUE) that narrow the totals, the chart, the
// top event types and every panel and tile (tiles.js says which are not narrowed). Clicking a value adds one, its chip removes it; they live in the address's
// fragment (`#filter=page:/pricing&filter=device:mobile`), so a reload or a shared link keeps
// them (the fragment is never sent to a server). Also the helpers the panels share: the read
// key's header, one JSON request, and the notes an answer earns (raw scan, refused filter).
(() => {
  "use strict";

  const KEY_STORAGE = "behavioral-analytics.read-key";
  const PROPERTY_PREFIX = "property:";
  // What each tile says while the API refuses the filters (`invalid_filter`): the refusal
  // itself is shown once, in the filter bar.
  const REFUSED = "not shown: the filters were refused";
  const TITLES = {
    page: "Page",
    entry_page: "Entry page",
    exit_page: "Exit page",
    referrer: "Referrer",
    utm_source: "UTM source",
    utm_medium: "UTM medium",
    utm_campaign: "UTM campaign",
    device: "Device",
    browser: "Browser",
    os: "OS",
    country: "Country",
    event_type: "Event type",
  };

  const $ = (id) => document.getElementById(id);
  const listeners = [];
  let filters = fromFragment();
  let refused = ""; // the API's refusal of the filters as they are, "" when none

  // `property:plan:pro` is `property:plan` = `pro`; any other dimension ends at the first colon.
  function parse(text) {
    const from = text.startsWith(PROPERTY_PREFIX) ? PROPERTY_PREFIX.length : 0;
    const colon = text.indexOf(":", from);
    if (colon <= 0 || colon === text.length - 1) return null;
    return { dimension: text.slice(0, colon), value: text.slice(colon + 1) };
  }

  function text(filter) {
    return `${filter.dimension}:${filter.value}`;
  }

  function fromFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const found = [];
    for (const entry of fragment.getAll("filter")) {
      const filter = parse(entry);
      if (filter && !found.some((f) => text(f) === text(filter))) found.push(filter);
    }
    return found;
  }

  function toFragment() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    fragment.delete("filter");
    for (const filter of filters) fragment.append("filter", text(filter));
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }

  // What a tile's figures answer: the filters and `extra` (its range, …); "" for none.
  function key(extra) {
    const texts = filters.map(text).join("\n");
    return extra === undefined ? texts : texts + "\n" + JSON.stringify(extra);
  }

  function changed() {
    toFragment();
    refused = "";
    drawChips();
    for (const listener of listeners) listener(list());
  }

  function list() {
    return filters.map((filter) => ({ ...filter }));
  }

  function add(dimension, value) {
    if (filters.some((f) => f.dimension === dimension && f.value === value)) return;
    filters.push({ dimension, value });
    changed();
  }

  function remove(index) {
    filters.splice(index, 1);
    changed();
  }

  function clear() {
    filters = [];
    changed();
  }

  function title(dimension) {
    if (dimension.startsWith(PROPERTY_PREFIX)) return dimension.slice(PROPERTY_PREFIX.length);
    return TITLES[dimension] || dimension;
  }

  function drawChips() {
    const chips = filters.map((filter, index) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "filter-chip";
      chip.dataset.dimension = filter.dimension;
      chip.dataset.value = filter.value;
      chip.title = "remove this filter";
      chip.textContent = `${title(filter.dimension)} = ${filter.value} ×`;
      chip.addEventListener("click", () => remove(index));
      // The refusal quotes the filter it names (at most its first 100 characters).
      if (refused && refused.includes(text(filter).slice(0, 100))) {
        chip.classList.add("refused");
        chip.setAttribute("aria-invalid", "true");
      }
      return chip;
    });
    $("filter-chips").replaceChildren(...chips);
    $("filter-bar").hidden = chips.length === 0;
    $("filter-error").textContent = refused ? "The filters were refused: " + refused : "";
    $("filter-error").hidden = !refused;
  }

  // -- requests -------------------------------------------------------------------------------

  function authorization() {
    const headers = {};
    const key = localStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  }

  // GET `path` with `params` (a URLSearchParams) and, with `filtered`, every filter.
  // Resolves to {ok, status, body}; rejects when the server cannot be reached.
  async function get(path, params, filtered) {
    const query = new URLSearchParams(params);
    if (filtered) for (const filter of filters) query.append("filter", text(filter));
    const response = await fetch(path + "?" + query, { headers: authorization(), cache: "no-store" });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    return { ok: response.ok, status: response.status, body };
  }

  // The filters an answer says it applied: `filters` (a list) or an older `filter` (one).
  function applied(body) {
    const answered = body.filters || (body.filter ? [body.filter] : []);
    return new Set(answered.map(text));
  }

  // Why an answer cannot be shown as filtered, or "" when it can: a refused request's detail
  // (`scan_too_large`, `invalid_filter`, `before_horizon`, …), or an answer that does not say
  // it applied every filter (a route that takes none would answer unfiltered numbers).
  function problem(answer) {
    if (!answer.ok) {
      const body = answer.body || {};
      return body.detail || body.message || `the server answered ${answer.status}`;
    }
    if (!filters.length) return "";
    const shown = applied(answer.body.current || answer.body);
    const top = applied(answer.body);
    const missing = filters.filter((f) => !shown.has(text(f)) && !top.has(text(f)));
    return missing.length ? "Not available with these filters: this answer is not narrowed by them." : "";
  }

  // `get` with every filter: resolves to {answer, problem, failure}. `problem` is why the answer
  // cannot be shown as filtered ("" when it can); `failure` is set too when that is worth a
  // retry (no answer, 5xx), and the tile may keep its figures (window.baStale). Once the API
  // refuses the filters, nothing is asked until they change.
  async function ask(path, params) {
    const stale = window.baStale;
    if (refused) return { answer: null, problem: REFUSED, failure: "" };
    const asked = key();
    let answer = null;
    try {
      answer = await get(path, params, true);
    } catch (error) {
      return { answer: null, problem: stale.UNREACHABLE, failure: stale.UNREACHABLE };
    }
    if (answer.status === 400 && answer.body && answer.body.error === "invalid_filter") {
      if (asked === key() && !refused) {
        refused = answer.body.detail || "invalid_filter";
        drawChips();
      }
      return { answer, problem: REFUSED, failure: "" };
    }
    if (stale.transient(answer.status)) {
      const failure = stale.reasonOf(answer.status, answer.body);
      return { answer, problem: failure, failure };
    }
    return { answer, problem: problem(answer), failure: "" };
  }

  // Where an answer says it was read: "raw_events", "aggregates" or "" (it does not say).
  function origin(body) {
    const parts = [body, body.current, body.previous].filter(Boolean);
    if (parts.some((part) => part.answered_from === "raw_events")) return "raw_events";
    return parts.some((part) => part.answered_from === "aggregates") ? "aggregates" : "";
  }

  // "from raw events (N scanned)" for an answer read from the raw events, else "".
  function source(body) {
    const parts = [body, body.current, body.previous].filter(Boolean);
    if (origin(body) !== "raw_events") return "";
    const scanned =
      typeof body.scanned_events === "number"
        ? body.scanned_events
        : parts.reduce((sum, part) => sum + (typeof part.scanned_events === "number" ? part.scanned_events : 0), 0);
    return `from raw events (${new Intl.NumberFormat("en-US").format(scanned)} scanned)`;
  }

  // Shows `message` in a tile's note element (an error when `bad`), or hides the note.
  function note(element, message, bad) {
    element.textContent = message;
    element.hidden = !message;
    element.classList.toggle("error", Boolean(bad && message && message !== REFUSED));
  }

  window.addEventListener("hashchange", () => {
    const found = fromFragment();
    if (found.map(text).join("\n") === filters.map(text).join("\n")) return;
    filters = found;
    refused = "";
    drawChips();
    for (const listener of listeners) listener(list());
  });

  drawChips();

  window.baFilters = {
    list,
    add,
    remove,
    clear,
    title,
    onChange: (listener) => listeners.push(listener),
    key,
    get,
    ask,
    REFUSED,
    problem,
    origin,
    source,
    note,
    range: null, // the days the picker shows: {from, to, compare}, set by the panels
  };
})();
