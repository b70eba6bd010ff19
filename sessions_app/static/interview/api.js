"use strict";
// The JSON API, called with the browser's login session. DRF's SessionAuthentication
// enforces CSRF, so every write sends the token from the page's csrf-token meta tag.

const api = (() => {
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

  class ApiError extends Error {
    constructor(message, { status = 0, code = "network_error" } = {}) {
      super(message);
      this.status = status; // 0: the request never got an answer
      this.code = code;
    }

    // Worth sending again: the network, a server error, a timeout or a rate limit.
    get retryable() {
      return this.status === 0 || this.status >= 500 || [408, 429].includes(this.status);
    }
  }

  async function request(url, { method = "GET", json, form } = {}) {
    const headers = { Accept: "application/json" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form;
    }
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken;

    let response;
    try {
      response = await fetch(url, { method, headers, body, credentials: "same-origin" });
    } catch {
      throw new ApiError("The server could not be reached.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      // A proxy's or a crashed server's HTML page: reported by status below.
    }
    if (!response.ok) {
      const message = data?.error?.message || `The server answered ${response.status}.`;
      throw new ApiError(message, { status: response.status, code: data?.error?.code || "http_error" });
    }
    return { status: response.status, data };
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  return { request, ApiError, sleep };
})();
