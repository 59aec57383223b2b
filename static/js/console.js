// Small behaviours for console pages. No inline scripts: the CSP allows only our own files.
(function () {
  "use strict";

  // Plain (non-htmx) forms that destroy something ask first.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !form.hasAttribute("hx-post") && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // Copy buttons: <button data-copy="#element-id">. Where the browser has no clipboard API
  // (plain HTTP on a LAN address) or refuses it, the text is selected for Ctrl+C / Cmd+C.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = (source.value !== undefined ? source.value : source.textContent).trim();
    var label = button.querySelector("[data-copy-label]") || button;
    function say(word, message, seconds) {
      if (!label.hasAttribute("data-copy-before")) label.setAttribute("data-copy-before", label.textContent);
      label.textContent = word;
      announce(message);
      clearTimeout(button.copyTimer);
      button.copyTimer = setTimeout(function () {
        label.textContent = label.getAttribute("data-copy-before");
        label.removeAttribute("data-copy-before");
      }, seconds * 1000);
    }
    function fallback() {
      selectText(source);
      // Long enough to read it and press the keys.
      say("Selected", "Copying is blocked here: the text is selected, press Ctrl+C or Cmd+C to copy it.", 10);
    }
    var clipboard = navigator.clipboard;
    if (!clipboard || typeof clipboard.writeText !== "function") { fallback(); return; }
    var writing;
    try { writing = clipboard.writeText(text); } catch (refused) { fallback(); return; }
    writing.then(function () { say("Copied", "Copied to the clipboard.", 2.4); }, fallback);
  });

  function selectText(source) {
    if (typeof source.select === "function") {
      source.focus();
      source.select();
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // The theme switch (static/js/theme.js keeps and applies the choice).
  function showThemeSwitches(root) {
    if (!window.ByteSpikeTheme) return;
    var current = window.ByteSpikeTheme.choice();
    root.querySelectorAll("[data-theme-switch]").forEach(function (box) {
      box.hidden = false;
      var input = box.querySelector("input[value='" + current + "']");
      if (input) input.checked = true;
    });
  }
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.name !== "theme-choice") return;
    if (window.ByteSpikeTheme) window.ByteSpikeTheme.choose(input.value);
  });

  // Scrolling charts open on their latest buckets (the right end), where a report is read from.
  function scrollChartsToLatest(root) {
    root.querySelectorAll(".chart").forEach(function (chart) {
      if (chart.scrollWidth > chart.clientWidth) chart.scrollLeft = chart.scrollWidth;
    });
  }

  // Tables turn into cards on phones (CSS, max-width 640px); each cell then shows its column's
  // name, copied here from the header so templates need not repeat it.
  function labelTableCells(root) {
    root.querySelectorAll("table.table").forEach(function (table) {
      var heads = table.tHead ? table.tHead.rows[0] : null;
      if (!heads) return;
      var names = [];
      Array.prototype.forEach.call(heads.cells, function (cell) {
        // What the header shows: a name only screen readers get ("Actions") is no label.
        var shown = cell.cloneNode(true);
        shown.querySelectorAll(".visually-hidden").forEach(function (node) { node.remove(); });
        var name = shown.textContent.replace(/\s+/g, " ").trim();
        for (var i = 0; i < (cell.colSpan || 1); i++) names.push(name);
      });
      Array.prototype.forEach.call(table.tBodies, function (body) {
        Array.prototype.forEach.call(body.rows, function (row) {
          var column = 0;
          Array.prototype.forEach.call(row.cells, function (cell) {
            if (!cell.hasAttribute("data-label") && (cell.colSpan || 1) === 1) {
              cell.setAttribute("data-label", names[column] || "");
            }
            column += cell.colSpan || 1;
          });
        });
      });
      table.classList.add("is-labelled");
    });
  }

  function enhance(root) {
    showThemeSwitches(root);
    labelTableCells(root);
    scrollChartsToLatest(root);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  } else {
    enhance(document);
  }
  // Once everything has loaded, layout is final: scroll charts again in case it moved.
  window.addEventListener("load", function () { scrollChartsToLatest(document); });
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () { scrollChartsToLatest(document); }, 150);
  });

  // Close the account switcher when clicking elsewhere or pressing Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.switcher[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.switcher[open]").forEach(function (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });

  // Dialogs. <a data-dialog-open="dialog-id" href="..."> opens the <dialog> (the href is the
  // page without JavaScript); [data-dialog-close] closes the dialog it is in.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog-open]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog-open"));
      if (dialog && typeof dialog.showModal === "function") {
        event.preventDefault();
        if (!dialog.open) dialog.showModal();
      }
      return;
    }
    var closer = event.target.closest("[data-dialog-close]");
    if (closer && closer.closest("dialog")) closer.closest("dialog").close();
  });

  // A closed dialog forgets any secret it showed; a form it replaced comes back blank
  // (data-reset-url answers the blank form fragment for data-reset-target).
  document.addEventListener("close", function (event) {
    var dialog = event.target;
    if (!(dialog instanceof HTMLDialogElement)) return;
    var secrets = dialog.querySelectorAll("[data-secret]");
    secrets.forEach(function (input) { input.removeAttribute("value"); input.value = ""; });
    dialog.querySelectorAll("[data-clear-on-close]").forEach(function (box) { box.replaceChildren(); });
    var url = dialog.getAttribute("data-reset-url");
    if (secrets.length && url && window.htmx) {
      window.htmx.ajax("GET", url, { target: dialog.getAttribute("data-reset-target"), swap: "outerHTML" });
    }
  }, true); // "close" does not bubble; listen while it travels down.

  // New content from htmx: open the dialog it belongs in when it asks to be shown, then put
  // the focus on what matters (the new secret, else the first field with an error).
  document.addEventListener("htmx:load", function (event) {
    var root = event.detail && event.detail.elt;
    if (!(root instanceof Element) || root === document.body) return;
    var table = root.closest("table");
    enhance(table && table.parentElement ? table.parentElement : root);
    var show = root.matches("[data-dialog-show]") ? root : root.querySelector("[data-dialog-show]");
    var dialog = show && show.closest("dialog");
    if (dialog && !dialog.open) dialog.showModal();
    var focus = root.matches("[data-autofocus]") ? root : root.querySelector("[data-autofocus]");
    focus = focus || root.querySelector("[aria-invalid='true']");
    if (focus) {
      focus.focus();
      if (focus.hasAttribute("data-secret")) focus.select();
    }
  });

  // Servers announce what happened to screen readers: HX-Trigger {"announce": {"message": ...}}.
  document.addEventListener("announce", function (event) {
    if (event.detail && event.detail.message) announce(event.detail.message);
  });

  function announce(text) {
    var region = document.getElementById("live-region");
    if (region) { region.textContent = ""; setTimeout(function () { region.textContent = text; }, 50); }
  }
  window.ByteSpike = { announce: announce };
})();
