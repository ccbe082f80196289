// Starts Swagger UI on /docs. A file of its own because the page's Content-Security-Policy
// allows no inline script. The spec is the one this server embeds; its first `servers` entry
// is relative ("/"), so "Try it out" calls this same origin.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = window.SwaggerUIBundle({
    url: "/docs/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The default sends the spec to an online validator: keep the page off the network.
    validatorUrl: null,
    // An API key is a secret: keep it in this page's memory only, never in localStorage.
    persistAuthorization: false,
    displayRequestDuration: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
