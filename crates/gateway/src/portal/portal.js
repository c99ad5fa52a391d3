// Progressive enhancement only: every page works without this script.
// It adds copy buttons and the live list of the "Test the connection" page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const value = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(value);
        button.textContent = "Copied";
      } catch (_) {
        // No clipboard access (an insecure origin, a denied permission):
        // select the text so the keyboard can copy it.
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
    });
  }
  for (const el of document.querySelectorAll(".nojs")) el.hidden = true;
  const live = document.querySelector("tbody[data-live]");
  if (live) follow(live);
});

function follow(tbody) {
  const status = document.getElementById("live-status");
  if (status) status.hidden = false;
  const poll = async () => {
    try {
      const url = `${tbody.dataset.live}?after=${encodeURIComponent(tbody.dataset.after)}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const html = await response.text();
        if (html.trim() !== "") {
          const template = document.createElement("template");
          template.innerHTML = html;
          const rows = Array.from(template.content.querySelectorAll("tr"));
          for (const row of rows.reverse()) {
            tbody.prepend(row);
            tbody.dataset.after = Math.max(Number(tbody.dataset.after), Number(row.dataset.id));
          }
        }
      }
    } finally {
      setTimeout(poll, 2000);
    }
  };
  setTimeout(poll, 2000);
}
