// Small progressive enhancements: countdowns, math in Markdown (KaTeX, when the page loads it) and
// live submission status. Pages work without it.
(function () {
  // A countdown replaces its text; data-prefix keeps what it counts to ("opens in ").
  function tick() {
    document.querySelectorAll(".countdown[data-until]").forEach(function (el) {
      var ms = new Date(el.dataset.until) - new Date();
      if (isNaN(ms)) return;
      var prefix = el.dataset.prefix || "";
      if (ms <= 0) { el.textContent = prefix + "now"; return; }
      var d = Math.floor(ms / 864e5), h = Math.floor(ms / 36e5) % 24, m = Math.floor(ms / 6e4) % 60, s = Math.floor(ms / 1e3) % 60;
      el.textContent = prefix + (d ? d + "d " : "") + h + "h " + m + "m " + s + "s";
    });
  }
  tick(); setInterval(tick, 1000);
  // The Markdown renderer (forum.rendering) keeps TeX as text in span.math.inline / div.math.block.
  if (window.katex) {
    document.querySelectorAll(".md .math").forEach(function (el) {
      try {
        window.katex.render(el.textContent.trim(), el, {
          displayMode: el.classList.contains("block"), throwOnError: false, trust: false,
          strict: "ignore", maxSize: 50, maxExpand: 1000,
        });
      } catch (e) { /* leave the TeX as text */ }
    });
  }
  // A notice such as "Submission #12 received; it is being scored" follows its submission: it polls
  // the JSON status route and rewrites itself until the result is in (its link does it without JS).
  document.querySelectorAll(".flash[data-status-url]").forEach(function (box) {
    var wait = 300;
    function check() {
      fetch(box.dataset.statusUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (s) {
          box.querySelector(".flash-text").textContent = s.text;
          box.dataset.status = s.status;
          if (!s.done) { wait = Math.min(wait * 1.5, 3000); setTimeout(check, wait); return; }
          box.classList.remove("info");
          box.classList.add(s.status === "scored" ? "success" : "error");
          var link = box.querySelector(".flash-refresh");
          if (link) link.remove();
        })
        .catch(function () { wait = Math.min(wait * 2, 10000); setTimeout(check, wait); });
    }
    setTimeout(check, wait);
  });
  var rows = document.getElementById("submission-rows");
  if (!rows) return;
  function pending() { return rows.querySelector('tr[data-status="received"], tr[data-status="scoring"]'); }
  var delay = 250;
  function poll() {
    if (!pending()) return;
    fetch(rows.dataset.url, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { rows.innerHTML = html; })
      .catch(function () {})
      .finally(function () { delay = Math.min(delay * 1.5, 3000); setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
