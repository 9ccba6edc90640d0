// The dead-letter page: select all, and confirm what cannot be undone.
(function () {
  "use strict";
  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input.select-row").forEach(function (box) { box.checked = all.checked; });
    });
  }
  document.querySelectorAll("button.console-confirm").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
    });
  });
})();
