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

  // Copy buttons: <button data-copy="#element-id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.value !== undefined ? source.value : source.textContent;
    navigator.clipboard.writeText(text.trim()).then(function () {
      var label = button.querySelector("[data-copy-label]") || button;
      var before = label.textContent;
      label.textContent = "Copied";
      announce("Copied to the clipboard.");
      setTimeout(function () { label.textContent = before; }, 1800);
    });
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
