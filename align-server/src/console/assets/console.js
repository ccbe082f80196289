// Align console: the little script the pages need. No framework, nothing from elsewhere.
"use strict";

// Copy buttons: <button data-copy="ELEMENT-ID"> copies that element's text.
function copyFrom(button) {
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) {
    return;
  }
  var text = source.textContent.trim();
  var shown = function () {
    button.textContent = "Copied";
    var note = document.querySelector("[data-copied]");
    if (note) {
      note.hidden = false;
    }
  };
  // Select the text as well, so Ctrl-C works where the clipboard API is not allowed.
  var range = document.createRange();
  range.selectNodeContents(source);
  var selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(shown, function () {
      if (document.execCommand && document.execCommand("copy")) {
        shown();
      }
    });
  } else if (document.execCommand && document.execCommand("copy")) {
    shown();
  }
}

// Forms with data-confirm="question" ask before submitting; buttons are disabled once a
// form is sent, so a double click cannot mint two keys.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      copyFrom(button);
    });
  });
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var question = form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) {
        event.preventDefault();
        return;
      }
      form.querySelectorAll("button[type=submit]").forEach(function (b) {
        // After the browser has taken the button's value.
        setTimeout(function () {
          b.disabled = true;
        }, 0);
      });
    });
  });
});
