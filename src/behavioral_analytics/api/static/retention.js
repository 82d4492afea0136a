// The retention grid: people by the day they were first seen (cohort rows, over the picker's
// days) and the share of each cohort active again N days or weeks later (columns), from
// /v1/retention with the page's filters (each cohort narrowed to the people with a matching
// event on its day). A refused request (`before_horizon`: cohorts older than the raw-event
// retention; `scan_too_large`: more raw events than a filtered answer reads) is the card's
// message.
(() => {
  "use strict";

  const MAX_DAYS = 30;
  const MAX_WEEKS = 12;
  const $ = (id) => document.getElementById(id);
  const filters = window.baFilters;
  const stale = window.baStale;
  const numberFormat = new Intl.NumberFormat("en-US");
  let unit = "day";
  let loading = 0;

  function daysBetween(first, last) {
    return Math.round((Date.parse(last + "T00:00:00Z") - Date.parse(first + "T00:00:00Z")) / 86400000);
  }

  // The columns asked for: every period the range's first cohort can have begun, capped.
  function maxOffset(range) {
    const span = Math.max(1, daysBetween(range.from, range.to));
    return unit === "day" ? Math.min(MAX_DAYS, span) : Math.max(1, Math.min(MAX_WEEKS, Math.ceil(span / 7)));
  }

  async function load() {
    const range = filters.range;
    if (!range) return;
    const mine = ++loading;
    const params = new URLSearchParams({ from: range.from, to: range.to, unit, max: String(maxOffset(range)) });
    const { answer, problem, failure } = await filters.ask("/v1/retention", params);
    if (mine !== loading) return;
    if (stale.settle($("retention-card"), failure, key(range))) return;
    $("retention-range").textContent = `${range.from} – ${range.to}`;
    const empty = !problem && window.baEmpty.storeEmpty(answer.body);
    window.baEmpty.noEvents($("retention-card"), empty, true);
    if (problem) {
      $("retention-grid").replaceChildren();
      $("retention-card").dataset.problem = problem;
      filters.note($("retention-note"), failure ? "" : problem, true);
      return;
    }
    delete $("retention-card").dataset.problem;
    if (empty) {
      $("retention-grid").replaceChildren();
      filters.note($("retention-note"), "");
      return;
    }
    draw(answer.body);
  }

  // What the grid shows: the filters, the range and the unit.
  function key(range) {
    return filters.key([range.from, range.to, unit]);
  }

  function draw(body) {
    const cohorts = body.cohorts || [];
    const columns = 1 + Math.max(0, ...cohorts.map((cohort) => cohort.returning.length - 1));
    const head = document.createElement("tr");
    head.append(th("cohort"), th("people"));
    for (let n = 0; n < columns; n++) head.append(th(`${unit === "day" ? "day" : "week"} ${n}`));
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    for (const cohort of cohorts) tbody.append(row(cohort, columns));
    $("retention-grid").replaceChildren(thead, tbody);
    const source = filters.source(body);
    filters.note($("retention-note"), cohorts.length ? source : "No one was first seen in this range." + (source ? ` (${source})` : ""));
  }

  function row(cohort, columns) {
    const tr = document.createElement("tr");
    tr.dataset.cohort = cohort.cohort;
    tr.dataset.size = String(cohort.size);
    const size = document.createElement("td");
    size.className = "size";
    size.textContent = numberFormat.format(cohort.size);
    tr.append(th(cohort.cohort, "row"), size);
    for (let n = 0; n < columns; n++) {
      const td = document.createElement("td");
      if (n < cohort.returning.length) {
        const rate = cohort.rates[n];
        td.className = "rate";
        td.dataset.offset = String(n);
        td.dataset.returning = String(cohort.returning[n]);
        td.dataset.rate = rate === null ? "" : String(rate);
        td.textContent = rate === null ? "–" : (100 * rate).toFixed(rate === 1 || rate === 0 ? 0 : 1) + "%";
        td.title = `${numberFormat.format(cohort.returning[n])} of ${numberFormat.format(cohort.size)}`;
        // The count in view (its cohort's size is the row's "people"), whole for a screen reader.
        const returning = document.createElement("span");
        returning.className = "returning";
        returning.textContent = numberFormat.format(cohort.returning[n]);
        const of = document.createElement("span");
        of.className = "visually-hidden";
        of.textContent = ` of ${numberFormat.format(cohort.size)} returned`;
        returning.append(of);
        td.append(returning);
        td.style.background = `rgba(79, 156, 249, ${(0.12 + 0.7 * (rate || 0)).toFixed(2)})`;
      } else {
        td.className = "future";
      }
      tr.append(td);
    }
    return tr;
  }

  function th(text, scope) {
    const cell = document.createElement("th");
    cell.textContent = text;
    if (scope) cell.scope = scope;
    return cell;
  }

  for (const button of document.querySelectorAll("#retention-card .toggle")) {
    button.addEventListener("click", () => {
      unit = button.dataset.unit;
      for (const other of document.querySelectorAll("#retention-card .toggle")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      load();
    });
  }
  document.addEventListener("dashboard-range", load);
  // A new read key: nothing of the previous one's.
  document.addEventListener("dashboard-key", () => {
    loading++;
    $("retention-grid").replaceChildren();
    $("retention-range").textContent = "";
    delete $("retention-card").dataset.problem;
    filters.note($("retention-note"), "");
  });
  // The range's document failed, so the grid was not asked again.
  document.addEventListener("dashboard-range-failed", (event) => {
    const range = filters.range;
    if (!stale.failed($("retention-card"), event.detail, range ? key(range) : "")) {
      $("retention-grid").replaceChildren();
      filters.note($("retention-note"), "");
    }
  });
})();
