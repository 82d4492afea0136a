// Marks on the page's cards, shared by every script: a card whose refresh failed keeps its
// figures marked "not refreshed since HH:MM:SS — why" (`data-stale`), or says "not loaded — why"
// when they answer another question (window.baStale); a store no event was ever committed to
// says so on its empty cards (`data-empty`, window.baEmpty). Loaded before the others.
(() => {
  "use strict";

  const UNREACHABLE = "the server could not be reached";
  const NO_EVENTS = "No events yet — send some to POST /v1/events (e.g. behavioral-analytics generate --via http).";
  const NO_EVENTS_SHORT = "No events yet.";
  let generation = 0; // which read key the page shows; figures of an earlier one never stand
  let clock = (epochSeconds) => new Date(epochSeconds * 1000).toISOString().slice(11, 19);

  // A panel whose refresh failed keeps its figures when they answer the question asked now
  // (`key`: its filters and range, "" for the live document's), marked "not refreshed since
  // HH:MM:SS — why", with `data-stale` holding why; its next refresh clears the mark.
  const refreshes = new WeakMap(); // element → {at: epoch seconds, key, generation}

  function refreshed(element, key = "", at = Date.now() / 1000) {
    refreshes.set(element, { at, key, generation });
    unmark(element);
  }

  function unmark(element) {
    delete element.dataset.stale;
    const note = element.querySelector(":scope > .stale-note");
    if (note) note.remove();
  }

  // Marks `element` as not refreshed, for `reason` (nothing when it is ""). True when its
  // figures stand (marked with the time they were drawn); false when they answer another
  // question or none were drawn ("not loaded"), and the caller blanks them.
  function failed(element, reason, key = "") {
    if (!reason) return false;
    const last = refreshes.get(element);
    const kept = Boolean(last) && last.key === key && last.generation === generation;
    element.dataset.stale = reason;
    const note = noteIn(element, "stale-note", ":scope > header, :scope > h2");
    note.textContent = kept ? `not refreshed since ${clock(last.at)} — ${reason}` : `not loaded — ${reason}`;
    return kept;
  }

  // One refresh's outcome: `element` refreshed, or marked for `failure`. True when it failed
  // and the figures stand (the caller draws nothing), as `failed`.
  function settle(element, failure, key = "") {
    if (!failure) refreshed(element, key);
    return failed(element, failure, key);
  }

  // Why an answer that is not OK drew nothing: its status and the API's `detail`.
  function reasonOf(status, body) {
    const detail = body && (body.detail || body.message);
    return `the server answered ${status}` + (typeof detail === "string" && detail ? ` (${detail})` : "");
  }

  // A status worth retrying (the figures stand meanwhile), not a refusal.
  function transient(status) {
    return status === 408 || status === 429 || (status >= 500 && status !== 501);
  }

  // A new read key: no figure drawn before stands ("not loaded" on failure). Returns its number.
  function newKey() {
    generation += 1;
    return generation;
  }

  window.baStale = {
    refreshed,
    failed,
    settle,
    unmark,
    reasonOf,
    transient,
    newKey,
    generation: () => generation,
    // How a time is written (dashboard.js: the reporting zone's clock); UTC until it says.
    setClock: (format) => {
      clock = format;
    },
    UNREACHABLE,
  };

  // -- a store no event was ever committed to -------------------------------------------------

  // Says in `element` that no event was ever committed (`full`: and where to send some), as
  // `data-empty`; or takes that back.
  function noEvents(element, empty, full = false) {
    let note = element.querySelector(":scope > .no-events");
    if (!empty) {
      delete element.dataset.empty;
      if (note) note.remove();
      return;
    }
    element.dataset.empty = "no-events";
    note = noteIn(element, "empty no-events", ":scope > .stale-note, :scope > header, :scope > h2");
    note.textContent = full ? NO_EVENTS : NO_EVENTS_SHORT;
  }

  // `element`'s note of `classes` (found by the last of them), made after what `above` selects (else
  // first) when it has none.
  function noteIn(element, classes, above) {
    const found = element.querySelector(":scope > ." + classes.split(" ").pop());
    if (found) return found;
    const note = document.createElement("p");
    note.className = classes;
    const before = element.querySelector(above);
    if (before) before.after(note);
    else element.prepend(note);
    return note;
  }

  // Whether an answer's `freshness` says no batch was ever committed.
  function storeEmpty(body) {
    const fresh = (body && body.freshness) || {};
    return "last_commit_at" in fresh && fresh.last_commit_at === null;
  }

  window.baEmpty = { noEvents, storeEmpty };
})();
