"use strict";
// The start page: create the interview through the API, then open it.

(() => {
  const page = JSON.parse(document.getElementById("start-page").textContent);
  const form = document.getElementById("start-form");
  const button = form.querySelector('button[type="submit"]');
  const status = document.getElementById("start-status");
  const error = document.getElementById("start-error");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!form.reportValidity()) return;
    const fields = new FormData(form);
    button.disabled = true;
    status.textContent = "Starting your interview...";
    try {
      const { data } = await api.request(page.sessions_url, {
        method: "POST",
        json: {
          role: fields.get("role").trim(),
          language: fields.get("language"),
          question_count: Number(fields.get("question_count")),
        },
      });
      window.location.assign(page.interview_url.replace("{id}", data.id));
    } catch (failure) {
      status.textContent = "";
      error.textContent = `The interview could not be started: ${failure.message}`;
      error.hidden = false;
      button.disabled = false;
    }
  });
})();
