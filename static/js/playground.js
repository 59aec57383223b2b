// The playground's chat (streamed answers read with fetch), and the announcements of task
// status changes (task cards and task rows poll themselves through htmx). No inline scripts and
// no eval: the CSP allows only our own files, and htmx runs with allowEval false.
(function () {
  "use strict";

  function announce(text) {
    if (window.ByteSpike) window.ByteSpike.announce(text);
  }

  // --- Chat --------------------------------------------------------------------------------
  // The conversation lives in the page (per chat form): each turn POSTs all of it to the
  // console's chat endpoint, which answers with the text gateway's OpenAI Chat stream.

  var chats = new WeakMap();

  function stateOf(form) {
    var state = chats.get(form);
    if (!state) {
      state = { messages: [], controller: null };
      chats.set(form, state);
    }
    return state;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function nearBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  }

  function addMessage(form, role, text) {
    var log = form.querySelector(".chat-log");
    var empty = log.querySelector("[data-chat-empty]");
    if (empty) empty.hidden = true;
    var item = element("div", "chat-msg chat-msg-" + role);
    item.appendChild(element("p", "chat-role", role === "user" ? "You" : form.dataset.modelName));
    item.appendChild(element("div", "chat-text", text));
    if (role === "assistant") item.appendChild(element("p", "chat-usage small muted"));
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function showError(form, message, code) {
    var box = form.querySelector(".chat-error");
    box.textContent = message || "";
    box.hidden = !message;
    // A 402 from the wallet: the way out is a top-up.
    var topUp = form.querySelector(".chat-top-up");
    if (topUp) topUp.hidden = code !== "insufficient_balance";
  }

  function setBusy(form, busy) {
    form.querySelector("[data-chat-send]").disabled = busy;
    form.querySelector("[data-chat-stop]").disabled = !busy;
    // A live region that is busy is read once it settles, not a token at a time.
    form.querySelector(".chat-log").setAttribute("aria-busy", busy ? "true" : "false");
  }

  // What a refused call says, and its error code when the answer is the API's JSON error.
  function refusal(response) {
    if (response.redirected) {
      return Promise.resolve({ message: "Your session has ended: reload the page and sign in again." });
    }
    return response.text().then(function (text) {
      try {
        var body = JSON.parse(text);
        if (body && body.error && body.error.message) {
          return { message: body.error.message, code: body.error.code };
        }
      } catch (ignored) { /* an HTML error page */ }
      if (response.status === 403) return { message: "Your role in this account does not allow this." };
      if (response.status === 404) return { message: "This key can no longer be used here. Reload the page." };
      return { message: "The request failed (HTTP " + response.status + "). Try again." };
    });
  }

  // Reads `data: {...}` frames as they arrive and appends each delta to `output`.
  function readStream(response, output, log) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var result = { error: "", done: false };

    function frame(block) {
      block.split("\n").forEach(function (line) {
        if (line.indexOf("data:") !== 0) return;
        var data = line.slice(5).trim();
        if (data === "[DONE]") { result.done = true; return; }
        var chunk;
        try { chunk = JSON.parse(data); } catch (ignored) { return; }
        if (chunk.error) { result.error = chunk.error.message || "The model stopped with an error."; return; }
        (chunk.choices || []).forEach(function (choice) {
          var text = choice.delta && choice.delta.content;
          if (typeof text === "string" && text) {
            var follow = nearBottom(log);
            output.appendChild(document.createTextNode(text));
            if (follow) log.scrollTop = log.scrollHeight;
          }
        });
      });
    }

    function pump() {
      return reader.read().then(function (part) {
        if (part.done) {
          if (buffer) frame(buffer);
          return result;
        }
        buffer += decoder.decode(part.value, { stream: true });
        var blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        blocks.forEach(frame);
        return pump();
      });
    }
    return pump();
  }

  function loadUsage(form, slot, requestId) {
    if (!requestId || !window.htmx) return;
    var url = form.dataset.usageUrl.replace("REQUEST_ID", encodeURIComponent(requestId));
    window.htmx.ajax("GET", url, { target: slot, swap: "innerHTML" });
  }

  function send(form) {
    var state = stateOf(form);
    if (state.controller) return;
    var input = form.querySelector("[name=message]");
    var text = input.value;
    if (!text.trim()) {
      showError(form, "Write a message first.");
      input.focus();
      return;
    }
    showError(form, "");
    state.messages.push({ role: "user", content: text });
    var question = addMessage(form, "user", text);
    var answer = addMessage(form, "assistant", "");
    var output = answer.querySelector(".chat-text");
    var log = form.querySelector(".chat-log");
    answer.classList.add("is-streaming");
    input.value = "";

    var fields = form.elements;
    var controller = new AbortController();
    state.controller = controller;
    setBusy(form, true);
    var requestId = null;

    function finish(note) {
      answer.classList.remove("is-streaming");
      state.controller = null;
      setBusy(form, false);
      if (note) answer.appendChild(element("p", "chat-note small muted", note));
    }

    function undo(message, code) {
      // The turn did not happen: take it back and give the text back for another try.
      state.messages.pop();
      question.remove();
      answer.remove();
      if (!log.querySelector(".chat-msg")) log.querySelector("[data-chat-empty]").hidden = false;
      input.value = text;
      finish("");
      showError(form, message, code);
      announce(message);
      input.focus();
    }

    var request = {
      key: fields.key.value,
      model: fields.model.value,
      system: fields.system.value,
      temperature: fields.temperature.value,
      max_tokens: fields.max_tokens.value,
      messages: state.messages.slice(),
    };
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-CSRFToken": fields.csrfmiddlewaretoken.value,
      },
      body: JSON.stringify(request),
      signal: controller.signal,
    }).then(function (response) {
      requestId = response.headers.get("X-Request-ID");
      var type = response.headers.get("Content-Type") || "";
      if (!response.ok || type.indexOf("text/event-stream") !== 0) {
        return refusal(response).then(function (refused) { undo(refused.message, refused.code); });
      }
      // The gateway took this request: "View code" shows it as a caller would send it.
      state.lastRequest = request;
      form.querySelector("[data-chat-code]").hidden = false;
      return readStream(response, output, log).then(function (result) {
        var said = output.textContent;
        if (result.error) {
          state.messages.pop();
          finish("");
          showError(form, result.error + " This answer was not billed.");
          announce(result.error);
          return;
        }
        state.messages.push({ role: "assistant", content: said });
        finish("");
        loadUsage(form, answer.querySelector(".chat-usage"), requestId);
        announce("Answer complete.");
      });
    }).catch(function (error) {
      if (error && error.name === "AbortError") {
        // Stopped: keep what was written (it is billed) and carry on from there.
        if (output.textContent) state.messages.push({ role: "assistant", content: output.textContent });
        else state.messages.pop();
        finish("Stopped. You pay for what was written.");
        loadUsage(form, answer.querySelector(".chat-usage"), requestId);
        announce("Stopped.");
        return;
      }
      if (requestId) {
        finish("The connection broke.");
        loadUsage(form, answer.querySelector(".chat-usage"), requestId);
        return;
      }
      undo("The request could not be sent. Check your connection and try again.");
    });
  }

  // "View code": the server writes the last request as curl and Python (the same JSON the chat
  // sent, so the code is the request that was made), shown in the panel's dialog.
  function viewCode(form) {
    var state = stateOf(form);
    if (!state.lastRequest) return;
    var dialog = document.getElementById("chat-code-dialog");
    fetch(form.dataset.codeUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": form.elements.csrfmiddlewaretoken.value,
      },
      body: JSON.stringify(state.lastRequest),
    }).then(function (response) {
      if (!response.ok) return refusal(response).then(function (message) { showError(form, message); });
      return response.text().then(function (html) {
        var box = dialog.querySelector("#chat-code");
        box.innerHTML = html;
        if (!dialog.open) dialog.showModal();
        var copy = box.querySelector("[data-copy]");
        if (copy) copy.focus();
      });
    }).catch(function () {
      showError(form, "The code could not be loaded. Check your connection and try again.");
    });
  }

  function newChat(form) {
    var state = stateOf(form);
    if (state.controller) state.controller.abort();
    state.messages = [];
    state.lastRequest = null;
    form.querySelector("[data-chat-code]").hidden = true;
    var log = form.querySelector(".chat-log");
    log.querySelectorAll(".chat-msg").forEach(function (item) { item.remove(); });
    log.querySelector("[data-chat-empty]").hidden = false;
    showError(form, "");
    form.querySelector("[name=message]").focus();
    announce("New chat.");
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("form[data-chat]")) return;
    event.preventDefault();
    send(form);
  });

  document.addEventListener("click", function (event) {
    var form = event.target.closest && event.target.closest("form[data-chat]");
    if (!form) return;
    if (event.target.closest("[data-chat-stop]")) {
      var state = stateOf(form);
      if (state.controller) state.controller.abort();
    } else if (event.target.closest("[data-chat-new]")) {
      newChat(form);
    } else if (event.target.closest("[data-chat-code]")) {
      viewCode(form);
    }
  });

  // Enter sends; Shift+Enter is a new line (and nothing is sent while composing text).
  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (!(input instanceof HTMLTextAreaElement) || input.name !== "message") return;
    var form = input.closest("form[data-chat]");
    if (!form) return;
    event.preventDefault();
    form.requestSubmit();
  });

  // --- Long runs ---------------------------------------------------------------------------
  // While a playground form's request runs ("Run now" waits for the images, up to 30 s), its
  // button spins and a bar with the seconds elapsed sits beside it. A success clears the
  // errors an earlier try left on the form (a refusal replaces the whole form instead).

  var runs = new WeakMap();

  // htmx fires these on the element that sent the request.
  function runForm(event) {
    var form = event.target;
    return form instanceof HTMLFormElement && form.matches("form.pg-form") ? form : null;
  }

  function stopRun(form) {
    var run = runs.get(form);
    if (!run) return;
    clearInterval(run.timer);
    run.box.remove();
    form.classList.remove("is-running");
    runs.delete(form);
  }

  function clearErrors(form) {
    form.querySelectorAll(".form-errors, .field-errors").forEach(function (node) { node.remove(); });
    form.querySelectorAll(".has-error").forEach(function (node) { node.classList.remove("has-error"); });
    form.querySelectorAll("[aria-invalid]").forEach(function (field) {
      field.removeAttribute("aria-invalid");
      var described = (field.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
        return id && !/-error$/.test(id);
      });
      if (described.length) field.setAttribute("aria-describedby", described.join(" "));
      else field.removeAttribute("aria-describedby");
    });
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = runForm(event);
    if (!form) return;
    stopRun(form);
    var slot = form.querySelector(".pg-submit");
    if (!slot) return;
    var box = element("div", "run-status");
    var bar = document.createElement("progress");
    bar.className = "progress run-progress";
    bar.setAttribute("aria-hidden", "true");
    var elapsed = element("span", "run-elapsed", "Running… 0 s");
    elapsed.setAttribute("data-run-elapsed", "");
    box.appendChild(bar);
    box.appendChild(elapsed);
    slot.appendChild(box);
    form.classList.add("is-running");
    var started = Date.now();
    var timer = setInterval(function () {
      if (!form.isConnected) { clearInterval(timer); return; }
      elapsed.textContent = "Running… " + Math.floor((Date.now() - started) / 1000) + " s";
    }, 1000);
    runs.set(form, { box: box, timer: timer });
    announce("Running.");
  });

  // A success lands in the results (the form stays): stop, and clear the form's old errors.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = runForm(event);
    if (!form) return;
    stopRun(form);
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status >= 200 && status < 300) clearErrors(form);
  });
  // A refusal replaces the form itself (htmx fires beforeSwap on the target, here the form).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = runForm(event);
    if (form) stopRun(form);
  });
  ["htmx:sendError", "htmx:responseError", "htmx:timeout", "htmx:sendAbort"].forEach(function (name) {
    document.addEventListener(name, function (event) {
      var form = runForm(event);
      if (form) stopRun(form);
    });
  });

  // --- Task status -------------------------------------------------------------------------
  // Cards and rows ([data-task-id][data-status]) replace themselves while they poll; a status
  // that changed since the last time this page saw the task is announced.

  var statuses = {};

  document.addEventListener("htmx:load", function (event) {
    var root = event.detail && event.detail.elt;
    if (!(root instanceof Element)) return;
    var items = Array.prototype.slice.call(root.querySelectorAll("[data-task-id][data-status]"));
    if (root.matches("[data-task-id][data-status]")) items.unshift(root);
    items.forEach(function (item) {
      var id = item.getAttribute("data-task-id");
      var status = item.getAttribute("data-status");
      var before = statuses[id];
      statuses[id] = status;
      if (before && before !== status) {
        announce(item.getAttribute("data-announce") || "Task " + id + ": " + status + ".");
      }
    });
  });
})();
