// The API token: the field that saves or forgets it, and where it is kept. sessionStorage:
// the token dies with the tab and is never written to disk by us. Not in a URL (URLs end
// up in access logs and history), not in a cookie (the API would then need CSRF protection).

const TOKEN_KEY = "jobs-dashboard.token";

export const currentToken = () => sessionStorage.getItem(TOKEN_KEY) || "";

function renderTokenState() {
  document.getElementById("token-state").textContent = currentToken() ? "(saved for this tab)" : "(none)";
}

// onChange runs once the token is saved or forgotten: calls that failed may work now.
export function startTokenField(onChange) {
  const input = document.getElementById("token");
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    input.value = "";
    renderTokenState();
    onChange();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    renderTokenState();
    onChange();
  });
  renderTokenState();
}
