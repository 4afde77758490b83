// Live parts of a page: <section data-live="/url/of/event/stream"> receives server-sent events
// named "tally" whose data is the HTML of its [data-live-target], rendered (and escaped) by the
// server. [data-live-status] says whether the stream is up and when the last update came; the
// browser's EventSource reconnects by itself after a drop.
(function () {
  "use strict";

  function clock(lang) {
    return new Date().toLocaleTimeString(lang || undefined, { timeZone: "Europe/Warsaw", hour12: false });
  }

  function connect(box) {
    var target = box.querySelector("[data-live-target]");
    var status = box.querySelector("[data-live-status]");
    var text = status && status.querySelector("[data-live-text]");
    var lang = document.documentElement.lang;

    function show(state, message) {
      if (!status || !text) return;
      status.classList.remove("on", "off");
      status.classList.add(state);
      text.textContent = message;
    }

    var source = new EventSource(box.getAttribute("data-live"));
    source.addEventListener("tally", function (event) {
      if (target) target.innerHTML = event.data;
      show("on", box.getAttribute("data-text-on") + " · " + clock(lang));
    });
    source.addEventListener("open", function () {
      show("on", box.getAttribute("data-text-on") + " · " + clock(lang));
    });
    source.addEventListener("error", function () {
      show("off", box.getAttribute("data-text-off"));
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function start() {
    var boxes = document.querySelectorAll("[data-live]");
    for (var i = 0; i < boxes.length; i++) connect(boxes[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
