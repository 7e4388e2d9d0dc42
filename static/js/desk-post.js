// POST a JSON body to one of the review desk's endpoints (session cookie and CSRF token) and give
// back its JSON answer; a refusal throws an Error whose `code` is the answer's `error`.
window.deskPost = async function (address, body, csrf) {
  "use strict";
  const response = await fetch(address, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
    body: JSON.stringify(body),
  });
  let payload = {};
  try {
    payload = await response.json();
  } catch (error) {
    payload = { error: "bad_response", detail: `the server answered ${response.status}` };
  }
  if (!response.ok) {
    const failure = new Error(typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail));
    failure.code = payload.error;
    throw failure;
  }
  return payload;
};
