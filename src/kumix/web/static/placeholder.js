// Placeholder until the browser client exists: shows who is logged in, using only
// textContent (no HTML sink), so it runs under the page's Trusted Types CSP.
const status = document.getElementById("status");
fetch("/api/whoami", { credentials: "same-origin" })
  .then((r) => r.json())
  .then((doc) => {
    status.textContent = doc.logged_in ? `Logged in as ${doc.account.user_id}` : "Not logged in";
  })
  .catch(() => {
    status.textContent = "The server did not answer.";
  });
