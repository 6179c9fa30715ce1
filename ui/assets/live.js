// Concord admin UI: live updates over server-sent events, and the time
// travel scrubber. Every page works without this script; it only keeps
// pages current and saves a page load when scrubbing.
//
// An element with data-live="URL" subscribes to that event stream. Each
// message is JSON {op, id, html}: "replace" sets the inner HTML of the
// element with that id, "upsert" replaces the element with that id or, if
// there is none, inserts the HTML at the start of the element named by
// "into", "append" adds the HTML at the end of the element with that id.
// The HTML is rendered and escaped by the server.
(function () {
  "use strict";

  function apply(msg) {
    var el = document.getElementById(msg.id);
    if (msg.op === "replace" && el) {
      el.innerHTML = msg.html;
    } else if (msg.op === "append" && el) {
      el.insertAdjacentHTML("beforeend", msg.html);
    } else if (msg.op === "upsert") {
      if (el) {
        el.outerHTML = msg.html;
      } else if (msg.into && document.getElementById(msg.into)) {
        document.getElementById(msg.into).insertAdjacentHTML("afterbegin", msg.html);
      }
    }
    var status = document.getElementById("live-status");
    if (status) {
      status.textContent = "live · updated " + new Date().toLocaleTimeString();
    }
  }

  function subscribe(el) {
    var url = el.getAttribute("data-live");
    if (!url) { return; }
    var es = new EventSource(url);
    var status = document.getElementById("live-status");
    es.onopen = function () {
      if (status) { status.textContent = "live"; }
    };
    es.onmessage = function (ev) {
      try { apply(JSON.parse(ev.data)); } catch (e) { /* ignore a malformed message */ }
    };
    es.addEventListener("end", function () {
      es.close();
      if (status) { status.textContent = "finished: no more updates"; }
    });
    es.onerror = function () {
      if (status) { status.textContent = "reconnecting…"; }
    };
  }

  // The scrubber: moving the range shows the state after that entry by
  // fetching the server-rendered panel instead of submitting the form.
  // Delegated, so it keeps working when a live update replaces the form.
  var pending = 0;
  function scrub(form) {
    var range = form.querySelector("input[type=range]");
    var target = document.getElementById(form.getAttribute("data-scrub"));
    if (!range || !target) { return false; }
    var n = ++pending;
    fetch(form.getAttribute("data-scrub-src") + "?at=" + encodeURIComponent(range.value), {credentials: "same-origin"})
      .then(function (r) { return r.text(); })
      .then(function (html) { if (n === pending) { target.innerHTML = html; } });
    return true;
  }
  document.addEventListener("input", function (ev) {
    var form = ev.target.closest && ev.target.closest("form[data-scrub]");
    var out = form && form.querySelector("output");
    if (out) { out.textContent = ev.target.value; }
  });
  document.addEventListener("change", function (ev) {
    var form = ev.target.closest && ev.target.closest("form[data-scrub]");
    if (form && ev.target.type === "range") { scrub(form); }
  });
  document.addEventListener("submit", function (ev) {
    var form = ev.target.closest && ev.target.closest("form[data-scrub]");
    if (form && scrub(form)) { ev.preventDefault(); }
  });

  function confirmForms() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(subscribe);
    confirmForms();
  });
})();
